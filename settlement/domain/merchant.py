"""Merchant payout accounts: where a merchant's money in one currency is paid."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from settlement.domain.payment import Currency, Identifier

PayoutMode = Literal["window", "payment"]


def _check_bic(value: str) -> str:
    try:
        return str(BIC(value))
    except SchwiftyException as exc:
        raise PydanticCustomError(
            "invalid_bic", "invalid BIC {v}: {e}", {"v": value, "e": str(exc)}
        ) from exc


class MerchantAccount(BaseModel):
    """One payout account of a merchant, per payout currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    merchant_id: Identifier
    currency: Currency
    creditor_name: str = Field(min_length=1, max_length=140)
    account_id: str = Field(min_length=1, max_length=34, description="IBAN or other account id")
    account_scheme: Literal["IBAN", "OTHER"] = "IBAN"
    bank_bic: Annotated[str, AfterValidator(_check_bic)]
    payout_mode: PayoutMode = "window"

    # A validator, not model_post_init: the registry rebuilds accounts it stored (and
    # checked) with model_construct, which runs model_post_init but no validator, and the
    # IBAN check was half the cost of reloading 10,000 accounts at a seal.
    @model_validator(mode="after")
    def _iban_checksum(self) -> MerchantAccount:
        if self.account_scheme == "IBAN":
            try:
                IBAN(self.account_id)
            except SchwiftyException as exc:
                raise ValueError(f"invalid IBAN for merchant {self.merchant_id}: {exc}") from exc
        return self


def mask_account(account_id: str) -> str:
    """For logs: keep the country/bank prefix shape and the last 4 characters only."""
    if len(account_id) <= 6:
        return "*" * len(account_id)
    return f"{account_id[:2]}{'*' * (len(account_id) - 6)}{account_id[-4:]}"
