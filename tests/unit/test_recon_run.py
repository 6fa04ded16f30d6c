"""A reconciliation run over statement files refuses what is not a statement, storing nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from settlement.iso20022.camt053 import render_camt053
from settlement.recon.run import Reconciliation, ReconInputError, ReconRequest
from tests.unit.fakes import FakeReconStore
from tests.unit.test_iso20022_bankmsgs_camt053 import STATEMENT

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def test_a_statement_file_reconciles_against_the_store(tmp_path: Path) -> None:
    path = tmp_path / "stmt.xml"
    path.write_bytes(render_camt053(STATEMENT))
    store = FakeReconStore()
    Reconciliation(store, ReconRequest(day=STATEMENT.to_date, files=(path,))).run()
    assert len(store.saved) == 1


def test_a_camt053_without_a_statement_is_refused(tmp_path: Path) -> None:
    # it was read as a day with no statements: a run over it could come out clean (exit 0)
    path = tmp_path / "empty.xml"
    path.write_text(f"<Document xmlns='{NS}'><BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId>"
                    "<CreDtTm>2026-11-02T10:00:00Z</CreDtTm></GrpHdr></BkToCstmrStmt></Document>")
    store = FakeReconStore()
    with pytest.raises(ReconInputError, match=r"refused \(missing_element\): BkToCstmrStmt/Stmt"):
        Reconciliation(store, ReconRequest(day=date(2026, 11, 2), files=(path,))).run()
    assert store.saved == []
