"""HTTP client for bank APIs: per-bank endpoint and token, retries, circuit breakers.

tenacity retries a delivery a few times right away (exponential backoff with
jitter); a per-bank pybreaker breaker stops calling a bank that keeps failing
and lets one trial call through after `breaker_reset_s`, so a slow or failing
bank costs the others nothing.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pybreaker
import structlog
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from settlement import metrics
from settlement.bank import signing
from settlement.config import BankSettings, GatewaySettings
from settlement.domain.errors import RetryableError
from settlement.service.ports import BankAnswer, PolledMessage

log = structlog.get_logger(__name__)


class BankUnavailableError(RetryableError):
    """The bank did not answer the call (timeout, refused, dropped, 5xx, breaker open)."""


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def __init__(self, bank: str) -> None:
        self.bank = bank
        self.opened = 0

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            self.opened += 1
        metrics.breaker_state(self.bank, new_state.name)
        log.warning("gateway.breaker_state", bank=self.bank, old=old_state.name,
                    new=new_state.name)


def _error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "transport"


def _status_kind(status: int) -> str:
    return f"http_{status // 100}xx"


class HttpBankClient:
    def __init__(self, gateway: GatewaySettings, banks: list[BankSettings],
                 transport: httpx.BaseTransport | None = None) -> None:
        self._g = gateway
        self._banks = {b.bic: b for b in banks}
        self._http = httpx.Client(timeout=httpx.Timeout(
            gateway.read_timeout_s, connect=gateway.connect_timeout_s), transport=transport)
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self.listeners: dict[str, _BreakerLog] = {}

    def _breaker(self, bic: str) -> pybreaker.CircuitBreaker:
        if bic not in self._breakers:
            listener = _BreakerLog(bic)
            self.listeners[bic] = listener
            self._breakers[bic] = pybreaker.CircuitBreaker(
                fail_max=self._g.breaker_failures, reset_timeout=self._g.breaker_reset_s,
                listeners=[listener])
            metrics.breaker_state(bic, pybreaker.STATE_CLOSED)
        return self._breakers[bic]

    def allows(self, bank_bic: str) -> bool:
        b = self._breaker(bank_bic)
        if b.current_state != pybreaker.STATE_OPEN:
            return True
        # pybreaker moves to half-open on the next call once reset_timeout has passed
        opened = b._state_storage.opened_at
        return opened is None or (time.time() - opened.timestamp()) >= self._g.breaker_reset_s

    def _base(self, bic: str) -> tuple[str, dict[str, str]]:
        bank = self._banks.get(bic)
        url = (bank.endpoint if bank and bank.endpoint else self._g.default_endpoint).rstrip("/")
        token = bank.token if bank and bank.token else self._g.default_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        return f"{url}/banks/{bic}", headers

    def _verify(self, bank_bic: str, call: str, resp: httpx.Response) -> None:
        """With a signing key configured, only an answer signed by the bank is believed."""
        bank = self._banks.get(bank_bic)
        key = bank.signing_key if bank else None
        if key is None:
            return
        if not signing.verify(key.get_secret_value().encode(), resp.content,
                              resp.headers.get(signing.HEADER)):
            metrics.bank_error(bank_bic, call, "unsigned")
            raise BankUnavailableError(f"{bank_bic}: {call}: the answer is not signed with the "
                                       "bank's key (X-Bank-Signature): not believed")

    def send(self, bank_bic: str, xml: bytes) -> BankAnswer:
        @retry(retry=retry_if_exception_type(BankUnavailableError),
               stop=stop_after_attempt(self._g.attempts_inline),
               wait=wait_random_exponential(multiplier=0.2, max=2.0), reraise=True)
        def _once() -> BankAnswer:
            return self._call(bank_bic, xml)

        try:
            return _once()
        except pybreaker.CircuitBreakerError as exc:
            raise BankUnavailableError(f"{bank_bic}: circuit breaker open") from exc

    def _call(self, bank_bic: str, xml: bytes) -> BankAnswer:
        url, headers = self._base(bank_bic)
        t0 = time.monotonic()

        def _post() -> httpx.Response:
            try:
                resp = self._http.post(f"{url}/pacs008", content=xml, headers={
                    **headers, "Content-Type": "application/xml"})
            except httpx.HTTPError as exc:
                metrics.bank_error(bank_bic, "send", _error_kind(exc))
                raise BankUnavailableError(f"{bank_bic}: {type(exc).__name__}: {exc}") from exc
            finally:
                metrics.bank_call(bank_bic, "send", time.monotonic() - t0)
            if resp.status_code >= 300:
                metrics.bank_error(bank_bic, "send", _status_kind(resp.status_code))
                raise BankUnavailableError(f"{bank_bic}: HTTP {resp.status_code}")
            self._verify(bank_bic, "send", resp)
            return resp

        try:
            resp = self._breaker(bank_bic).call(_post)
        except pybreaker.CircuitBreakerError as exc:
            if exc.__context__ is None:  # refused without a call; a tripping call was counted
                metrics.bank_error(bank_bic, "send", "breaker_open")
            raise BankUnavailableError(f"{bank_bic}: circuit breaker open") from exc
        return BankAnswer(resp.status_code, resp.content, int((time.monotonic() - t0) * 1000))

    def poll(self, bank_bic: str, after: int) -> tuple[list[PolledMessage], int]:
        return self._outbox(bank_bic, after, 500, "poll")

    def _outbox(self, bank_bic: str, after: int, limit: int, call: str) -> tuple[list[PolledMessage], int]:
        url, headers = self._base(bank_bic)
        t0 = time.monotonic()
        try:
            resp = self._http.get(f"{url}/messages", params={"after": after, "limit": limit},
                                  headers=headers)
        except httpx.HTTPError as exc:
            metrics.bank_error(bank_bic, call, _error_kind(exc))
            raise BankUnavailableError(f"{bank_bic}: {call}: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.bank_call(bank_bic, call, time.monotonic() - t0)
        if resp.status_code != 200:
            metrics.bank_error(bank_bic, call, _status_kind(resp.status_code))
            raise BankUnavailableError(f"{bank_bic}: {call}: HTTP {resp.status_code}")
        self._verify(bank_bic, call, resp)
        body = resp.json()
        msgs = [PolledMessage(int(m["cursor"]), str(m["type"]), str(m["msg_id"]),
                              str(m["xml"]).encode()) for m in body.get("messages", [])]
        return msgs, int(body.get("next", after))

    def probe_idle(self) -> None:
        """Let an open breaker that nothing sends through find out whether its bank is back.

        pybreaker only leaves "open" on a call. Once this process holds no deliveries
        for a bank (they moved to another replica, or all went out there), its breaker
        would stay open, and its gauge say so, until a restart. So a breaker past
        `breaker_reset_s` makes one read-only call instead, the first entry of the
        bank's outbox, through the breaker: closed if it answers, open again if not.
        """
        for bic, breaker in list(self._breakers.items()):
            if breaker.current_state != pybreaker.STATE_OPEN or not self.allows(bic):
                continue
            try:
                breaker.call(self._outbox, bic, 0, 1, "probe")
            except Exception as exc:  # any failure is counted by the breaker: open again
                log.info("gateway.breaker_probe_failed", bank=bic, error=str(exc)[:200])

    def close(self) -> None:
        self._http.close()
