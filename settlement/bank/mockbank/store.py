"""BankStore: one SQLite file per bank holding everything the bank knows.

Messages by MsgId (with the answer bytes), transactions and their decisions, accounts
and balances, booked entries, statement chains, pending statement faults and the outbox.
A partial unique index on accepted EndToEndIds makes a double credit impossible even if
the logic above had a bug. Timestamps are stored as fixed-width UTC text so they sort.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, currency TEXT, balance_minor INTEGER NOT NULL,
  closed INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (
  msg_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, answer BLOB NOT NULL,
  nb_of_txs INTEGER NOT NULL, resends INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS transactions (
  id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL, tx_index INTEGER NOT NULL,
  end_to_end_id TEXT NOT NULL, instr_id TEXT, uetr TEXT, amount_minor INTEGER NOT NULL,
  currency TEXT NOT NULL, creditor_account TEXT, creditor_bic TEXT, processor_account TEXT,
  settlement_date TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT,
  settle_due_at TEXT, settled_at TEXT, booking_date TEXT, credited_count INTEGER NOT NULL DEFAULT 0,
  return_reason TEXT, return_due_at TEXT, returned_at TEXT, UNIQUE (msg_id, tx_index));
CREATE UNIQUE INDEX IF NOT EXISTS tx_accepted_once ON transactions (end_to_end_id)
  WHERE decision = 'ACSP';
CREATE TABLE IF NOT EXISTS entries (
  id INTEGER PRIMARY KEY, account TEXT NOT NULL, currency TEXT NOT NULL,
  amount_minor INTEGER NOT NULL, credit_debit TEXT NOT NULL, booking_date TEXT NOT NULL,
  value_date TEXT NOT NULL, acct_svcr_ref TEXT NOT NULL, end_to_end_id TEXT, uetr TEXT,
  msg_id TEXT, is_return INTEGER NOT NULL DEFAULT 0, return_reason TEXT, statement_id TEXT);
CREATE TABLE IF NOT EXISTS statements (
  account TEXT PRIMARY KEY, seq INTEGER NOT NULL, closing_minor INTEGER NOT NULL, to_date TEXT);
CREATE TABLE IF NOT EXISTS statement_faults (
  id INTEGER PRIMARY KEY, account TEXT NOT NULL, fault TEXT NOT NULL, params TEXT NOT NULL,
  applied_in TEXT);
CREATE TABLE IF NOT EXISTS outbox (
  cursor INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, msg_id TEXT NOT NULL,
  xml BLOB NOT NULL, created_at TEXT NOT NULL);
"""

Row = dict[str, Any]


def ts(value: datetime) -> str:
    """Fixed-width UTC text, so string order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class BankStore:
    """Data access only; decisions live in Bank. Not shared between processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit (re-entrant); a crash midway leaves nothing half-booked."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, *args: Any) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql: str, *args: Any) -> Row | None:
        rows = self._all(sql, *args)
        return rows[0] if rows else None

    def _exec(self, sql: str, *args: Any) -> int:
        with self._lock:
            return int(self._db.execute(sql, args).lastrowid or 0)

    def close(self) -> None:
        self._db.close()

    # --- meta and counters ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value)

    def next_seq(self, name: str) -> int:
        with self.transaction():
            value = int(self.meta(f"seq:{name}") or 0) + 1
            self.set_meta(f"seq:{name}", str(value))
            return value

    # --- accounts ------------------------------------------------------------------------

    def ensure_account(self, account_id: str, kind: str, currency: str | None, balance_minor: int,
                       closed: bool = False, blocked: bool = False) -> None:
        self._exec("INSERT OR IGNORE INTO accounts (id, kind, currency, balance_minor, closed, blocked)"
                   " VALUES (?, ?, ?, ?, ?, ?)", account_id, kind, currency, balance_minor, closed, blocked)

    def account(self, account_id: str) -> Row | None:
        return self._one("SELECT * FROM accounts WHERE id = ?", account_id)

    def accounts(self) -> list[Row]:
        return self._all("SELECT * FROM accounts ORDER BY kind DESC, id")

    def add_balance(self, account_id: str, delta_minor: int) -> None:
        self._exec("UPDATE accounts SET balance_minor = balance_minor + ? WHERE id = ?", delta_minor,
                   account_id)

    # --- messages and transactions -------------------------------------------------------

    def message(self, msg_id: str) -> Row | None:
        return self._one("SELECT * FROM messages WHERE msg_id = ?", msg_id)

    def add_message(self, msg_id: str, received_at: datetime, answer: bytes, nb_of_txs: int) -> None:
        self._exec("INSERT INTO messages (msg_id, received_at, answer, nb_of_txs) VALUES (?, ?, ?, ?)",
                   msg_id, ts(received_at), answer, nb_of_txs)

    def count_resend(self, msg_id: str) -> None:
        self._exec("UPDATE messages SET resends = resends + 1 WHERE msg_id = ?", msg_id)

    def add_transaction(self, row: Row) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._exec(f"INSERT INTO transactions ({cols}) VALUES ({marks})", *row.values())

    def is_accepted(self, end_to_end_id: str) -> bool:
        sql = "SELECT 1 FROM transactions WHERE end_to_end_id = ? AND decision = 'ACSP'"
        return self._one(sql, end_to_end_id) is not None

    def reserved(self, processor_account: str) -> int:
        row = self._one("SELECT COALESCE(SUM(amount_minor), 0) AS s FROM transactions WHERE"
                        " processor_account = ? AND decision = 'ACSP' AND settled_at IS NULL",
                        processor_account)
        return int(row["s"]) if row else 0

    def transactions(self) -> list[Row]:
        return self._all("SELECT * FROM transactions ORDER BY id")

    def next_due(self) -> str | None:
        """The earliest pending settlement or return instant (text), or None."""
        row = self._one(
            "SELECT MIN(t) AS t FROM (SELECT MIN(settle_due_at) AS t FROM transactions WHERE"
            " decision = 'ACSP' AND settled_at IS NULL UNION ALL SELECT MIN(return_due_at) FROM"
            " transactions WHERE return_due_at IS NOT NULL AND returned_at IS NULL)")
        return None if row is None or row["t"] is None else str(row["t"])

    def due_settlements(self, at: str) -> list[Row]:
        return self._all("SELECT * FROM transactions WHERE decision = 'ACSP' AND settled_at IS NULL"
                         " AND settle_due_at = ? ORDER BY id", at)

    def due_returns(self, at: str) -> list[Row]:
        return self._all("SELECT * FROM transactions WHERE return_due_at = ? AND returned_at IS NULL"
                         " ORDER BY id", at)

    def mark_settled(self, tx_id: int, at: datetime, booking_date: str, return_due_at: str | None) -> None:
        # credited_count is a guard, not a counter we trust: the WHERE makes it 0 -> 1 only.
        self._exec("UPDATE transactions SET settled_at = ?, booking_date = ?, credited_count ="
                   " credited_count + 1, return_due_at = ? WHERE id = ? AND settled_at IS NULL",
                   ts(at), booking_date, return_due_at, tx_id)

    def mark_returned(self, tx_id: int, at: datetime) -> None:
        self._exec("UPDATE transactions SET returned_at = ? WHERE id = ?", ts(at), tx_id)

    # --- entries, statements, faults -----------------------------------------------------

    def add_entry(self, row: Row) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        return self._exec(f"INSERT INTO entries ({cols}) VALUES ({marks})", *row.values())

    def set_entry_ref(self, entry_id: int, ref: str) -> None:
        self._exec("UPDATE entries SET acct_svcr_ref = ? WHERE id = ?", ref, entry_id)

    def unstated_entries(self, account: str, up_to: str) -> list[Row]:
        return self._all("SELECT * FROM entries WHERE account = ? AND statement_id IS NULL AND"
                         " booking_date <= ? ORDER BY id", account, up_to)

    def move_entry(self, entry_id: int, to_date: str) -> None:
        self._exec("UPDATE entries SET booking_date = ?, value_date = ? WHERE id = ?", to_date, to_date,
                   entry_id)

    def mark_stated(self, entry_ids: list[int], statement_id: str) -> None:
        for entry_id in entry_ids:
            self._exec("UPDATE entries SET statement_id = ? WHERE id = ?", statement_id, entry_id)

    def statement_state(self, account: str) -> Row | None:
        return self._one("SELECT * FROM statements WHERE account = ?", account)

    def save_statement_state(self, account: str, seq: int, closing_minor: int, to_date: str) -> None:
        self._exec("INSERT OR REPLACE INTO statements (account, seq, closing_minor, to_date)"
                   " VALUES (?, ?, ?, ?)", account, seq, closing_minor, to_date)

    def add_fault(self, account: str, fault: str, params: str) -> int:
        return self._exec("INSERT INTO statement_faults (account, fault, params) VALUES (?, ?, ?)",
                          account, fault, params)

    def pending_faults(self, account: str) -> list[Row]:
        return self._all("SELECT * FROM statement_faults WHERE account = ? AND applied_in IS NULL"
                         " ORDER BY id", account)

    def mark_fault_applied(self, fault_id: int, statement_id: str) -> None:
        self._exec("UPDATE statement_faults SET applied_in = ? WHERE id = ?", statement_id, fault_id)

    # --- outbox --------------------------------------------------------------------------

    def append_outbox(self, msg_type: str, msg_id: str, xml: bytes, created_at: datetime) -> int:
        return self._exec("INSERT INTO outbox (type, msg_id, xml, created_at) VALUES (?, ?, ?, ?)",
                          msg_type, msg_id, xml, ts(created_at))

    def outbox(self, after: int, limit: int) -> list[Row]:
        return self._all("SELECT * FROM outbox WHERE cursor > ? ORDER BY cursor LIMIT ?", after, limit)
