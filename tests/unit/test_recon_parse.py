"""Statement files parsed by a second process give the same items, and the same refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from settlement.domain.reconciliation import BookedLine
from settlement.iso20022.camt053 import iter_camt053, render_camt053
from settlement.iso20022.camt054 import parse_entry_line
from settlement.iso20022.errors import MessageRefusedError
from settlement.recon.parse import ChildParser
from tests.unit.test_iso20022_bankmsgs_camt053 import STATEMENT, make_statement


def test_a_child_parses_like_the_parent(tmp_path: Path) -> None:
    data = render_camt053(make_statement(*STATEMENT.entries * 1500))
    path = tmp_path / "s.xml"
    path.write_bytes(data)
    progress: list[int] = []
    rss: list[int] = []
    items = list(ChildParser(path, 1 << 30).items(progress.append, rss))
    assert items == list(iter_camt053(data, max_bytes=1 << 30, entry=parse_entry_line))
    assert sum(isinstance(i, BookedLine) for i in items) == 3000
    assert progress[-1] == len(data) and progress == sorted(progress)
    assert len(rss) == 1 and rss[0] > 0


def test_a_refusal_in_the_child_is_raised_in_the_parent(tmp_path: Path) -> None:
    data = render_camt053(STATEMENT)
    path = tmp_path / "cut.xml"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MessageRefusedError) as info:
        list(ChildParser(path, 1 << 30).items(lambda _: None, []))
    assert info.value.code == "malformed"
