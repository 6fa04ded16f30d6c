"""`settlement merchants import` refuses a bad file as a whole, with one clear line (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli import invoke

HEADER = "merchant_id,currency,creditor_name,account_id,bank_bic\n"


@pytest.mark.parametrize(("name", "content", "message"), [
    # a number crashed the import with TypeError; an object was read key by key as "rows"
    ("number.json", "42", "a .json file must hold a list of accounts, got int"),
    ("object.json", '{"merchant_id": "m-1"}', "a .json file must hold a list of accounts, got dict"),
    # csv.DictReader files surplus values under the key None: pydantic said "Keys should be strings"
    ("surplus.csv", HEADER + "m-1,EUR,Acme,DE89370400440532013000,MOCKDEFFXXX,oops\n",
     "row 1: 1 more value(s) than the header has columns"),
], ids=["json_number", "json_object", "csv_surplus_values"])
def test_a_malformed_import_file_exits_2_with_a_clear_line(
    tmp_path: Path, name: str, content: str, message: str,
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = invoke(["merchants", "import", str(path)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
