"""Gateway and mock bank authenticate each other: the bank checks the gateway's bearer
token, the gateway checks the bank's HMAC signature on every answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from settlement.bank import signing
from settlement.bank.client import BankUnavailableError, HttpBankClient
from settlement.bank.mockbank.app import create_app
from settlement.bank.mockbank.config import parse
from settlement.config import BankSettings, GatewaySettings
from tests.unit.test_mockbank_support import BIC, OPEN, TOKEN, config_dict, pacs008


def _bank(tmp_path: Path, key: str | None) -> TestClient:
    raw: dict[str, Any] = config_dict(tmp_path)
    if key is not None:
        raw["banks"][0]["signing_key"] = key
    return TestClient(create_app(parse(raw, env={"MOCKBANK_TEST_TOKEN": TOKEN})))


class _Via(httpx.BaseTransport):
    """The gateway's HTTP calls, served by the mock bank's ASGI app in-process."""

    def __init__(self, bank: TestClient) -> None:
        self.bank = bank

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = self.bank.request(request.method, str(request.url), content=request.read(),
                              headers=dict(request.headers))
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)


def _client(bank: TestClient, key: str | None, token: str = TOKEN) -> HttpBankClient:
    settings = BankSettings(bic=BIC, endpoint="http://testserver", token=SecretStr(token),
                            signing_key=SecretStr(key) if key else None)
    return HttpBankClient(GatewaySettings(attempts_inline=1), [settings], transport=_Via(bank))


def test_signatures_are_hmac_sha256_over_the_body() -> None:
    header = signing.sign(b"k", b"body")
    assert header.startswith("sha256=") and signing.verify(b"k", b"body", header)
    assert not signing.verify(b"k", b"body!", header)
    assert not signing.verify(b"other", b"body", header)
    assert not signing.verify(b"k", b"body", None)


def test_a_signed_answer_from_the_bank_is_believed(tmp_path: Path) -> None:
    with _bank(tmp_path, "shared-key") as bank:
        client = _client(bank, "shared-key")
        answer = client.send(BIC, pacs008([(OPEN, 100)]))
        assert answer.status_code == 200 and b"pacs.002" in answer.body
        messages, _ = client.poll(BIC, 0)
        assert [m.msg_type[:8] for m in messages] == ["pacs.002"]
        client.close()


@pytest.mark.parametrize(("bank_key", "gateway_key"), [(None, "shared-key"),
                                                       ("someone-else", "shared-key")])
def test_an_unsigned_or_wrongly_signed_answer_is_not_believed(tmp_path: Path, bank_key: str | None,
                                                              gateway_key: str) -> None:
    with _bank(tmp_path, bank_key) as bank:
        client = _client(bank, gateway_key)
        with pytest.raises(BankUnavailableError, match="not signed with the bank's key"):
            client.send(BIC, pacs008([(OPEN, 100)]))
        with pytest.raises(BankUnavailableError, match="not signed"):
            client.poll(BIC, 0)
        client.close()


def test_the_bank_refuses_a_gateway_without_its_token(tmp_path: Path) -> None:
    with _bank(tmp_path, "shared-key") as bank:
        client = _client(bank, "shared-key", token="not-the-token")
        with pytest.raises(BankUnavailableError, match="HTTP 401"):
            client.send(BIC, pacs008([(OPEN, 100)]))
        client.close()
