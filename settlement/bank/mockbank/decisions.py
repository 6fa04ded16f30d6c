"""How the bank decides each transaction of a pacs.008: pure, seeded, replayable.

Checks run in this order; the first that fails gives the reason:
  RC01  creditor agent BIC is not this bank (BIC8 compared)
  AM03  the bank holds no processor account in the batch currency
  AC01  creditor account unknown (unless accept_unknown_accounts opens it)
  AC04  creditor account closed
  AC06  creditor account blocked
  AM03  creditor account held in another currency
  AM05  EndToEndId already accepted (in another message, or twice in this one)
  <random> seeded reject with a reason drawn from reject_reasons (reject_rate)
  AM04  the processor account cannot cover it; this and every later transaction
Random draws come from random.Random(sha256(seed, MsgId, EndToEndId)), always in the same
order, so a re-send (or a replay with the same seed) gets the same decisions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from settlement.bank.mockbank.config import FaultProfile

AccountLookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class TxInput:
    end_to_end_id: str
    amount_minor: int
    creditor_bic: str | None
    creditor_account: str | None


@dataclass(frozen=True)
class Draws:
    """The seeded draws of one transaction, made whether or not they are used."""

    reject: float
    reject_reason: str
    returned: float
    return_reason: str


@dataclass(frozen=True)
class Decision:
    status: str  # ACSP or RJCT
    reason: str | None
    return_reason: str | None  # set when the accepted transaction will be returned later
    opens_account: bool = False


def draws(faults: FaultProfile, msg_id: str, end_to_end_id: str) -> Draws:
    digest = hashlib.sha256(f"{faults.seed}\x1f{msg_id}\x1f{end_to_end_id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return Draws(reject=rng.random(), reject_reason=rng.choice(faults.reject_reasons),
                 returned=rng.random(), return_reason=rng.choice(faults.return_reasons))


def same_bank(bic: str | None, bank_bic: str) -> bool:
    return bic is not None and bic[:8] == bank_bic[:8]


def _account_reason(tx: TxInput, currency: str, lookup: AccountLookup,
                    accept_unknown: bool) -> tuple[str | None, bool]:
    account = lookup(tx.creditor_account) if tx.creditor_account else None
    if account is None:
        return (None, True) if accept_unknown and tx.creditor_account else ("AC01", False)
    if account["kind"] != "merchant" or account["closed"]:
        return ("AC04" if account["closed"] else "AC01"), False
    if account["blocked"]:
        return "AC06", False
    if account["currency"] not in (None, currency):
        return "AM03", False
    return None, False


def decide_batch(txs: list[TxInput], *, bank_bic: str, msg_id: str, currency: str,
                 faults: FaultProfile, lookup: AccountLookup, accept_unknown: bool,
                 already_accepted: Callable[[str], bool], available_minor: int | None) -> list[Decision]:
    """One Decision per transaction, in order. `available_minor` None = no processor account (AM03)."""
    out: list[Decision] = []
    seen: set[str] = set()
    short_of_funds = False
    for tx in txs:
        d = draws(faults, msg_id, tx.end_to_end_id)
        opens = False
        if not same_bank(tx.creditor_bic, bank_bic):
            reason: str | None = "RC01"
        elif available_minor is None:
            reason = "AM03"
        else:
            reason, opens = _account_reason(tx, currency, lookup, accept_unknown)
        if reason is None and (tx.end_to_end_id in seen or already_accepted(tx.end_to_end_id)):
            reason = "AM05"
        if reason is None and d.reject < faults.reject_rate:
            reason = d.reject_reason
        if reason is None and available_minor is not None:
            short_of_funds = short_of_funds or tx.amount_minor > available_minor
            if short_of_funds:
                reason = "AM04"
            else:
                available_minor -= tx.amount_minor
        if reason is not None:
            out.append(Decision("RJCT", reason, None))
            continue
        seen.add(tx.end_to_end_id)
        returned = d.return_reason if d.returned < faults.return_rate else None
        out.append(Decision("ACSP", None, returned, opens_account=opens))
    return out
