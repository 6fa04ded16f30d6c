"""The mock bank over HTTP (starlette): bank endpoints with bearer auth, admin endpoints without.

Bank endpoints: POST /banks/{bic}/pacs008, GET /banks/{bic}/messages. Admin endpoints
(bind to 127.0.0.1): /admin/clock, /admin/banks/{bic}/{faults,statement-faults,
transactions,accounts}, and /healthz. See docs/mock-bank.md for the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from settlement.bank import signing
from settlement.bank.mockbank.bank import Bank, BankError
from settlement.bank.mockbank.config import MockBankConfig
from settlement.bank.mockbank.hub import MockBank
from settlement.domain.errors import ConfigError

MAX_PAGE = 1000


class _DroppedResponse(Response):
    """The 'drop' fault: headers promise a body that never comes; the server closes the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/xml"), (b"content-length", b"4096")]})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _signed(bank: Bank, response: Response) -> Response:
    """The answer with the bank's signature, when it has a signing key."""
    key = bank.config.signing_key
    if key is not None:
        response.headers[signing.HEADER] = signing.sign(key.get_secret_value().encode(),
                                                        bytes(response.body))
    return response


def _authorized(request: Request, bank: Bank) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = bank.config.token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` bytes (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: MockBankConfig, *, tick_interval_s: float | None = None,
               mock: MockBank | None = None) -> Starlette:
    """The ASGI app over `mock` (else a MockBank opened from `config`, closed at shutdown).

    With `tick_interval_s`, a background task processes what falls due between requests;
    without it, due events are processed on every bank request and clock move.
    """
    owned = mock is None
    hub = mock or MockBank(config)

    def _bank(request: Request) -> Bank | None:
        return hub.bank(request.path_params["bic"])

    def _gate(request: Request) -> Bank | Response:
        bank = _bank(request)
        if bank is None:
            return _error(404, "unknown bank")
        if bank.faults.down:
            return _error(503, "bank is down")
        if not _authorized(request, bank):
            return _error(401, "missing or wrong bearer token")
        return bank

    async def pacs008(request: Request) -> Response:
        bank = _gate(request)
        if isinstance(bank, Response):
            return bank
        body = await _read_body(request, config.max_body_bytes)
        if body is None:
            return _error(413, f"body exceeds {config.max_body_bytes} bytes")
        latency, action = bank.transport_draw()
        await asyncio.sleep(latency)
        if action == "5xx":
            return _error(503, "injected 5xx: nothing was processed")
        if action == "timeout":
            await asyncio.sleep(bank.faults.timeout_sleep_s)
        answer = await run_in_threadpool(bank.receive_pacs008, body)
        if action == "drop":
            return _DroppedResponse()
        return _signed(bank, Response(answer, media_type="application/xml"))

    async def messages(request: Request) -> Response:
        bank = _gate(request)
        if isinstance(bank, Response):
            return bank
        try:
            after = int(request.query_params.get("after", "0"))
            limit = min(max(int(request.query_params.get("limit", "100")), 1), MAX_PAGE)
        except ValueError:
            return _error(400, "after and limit must be integers")
        rows, nxt = await run_in_threadpool(bank.outbox, after, limit)
        return _signed(bank, JSONResponse({"messages": [
            {"cursor": r["cursor"], "type": r["type"], "msg_id": r["msg_id"], "xml": bytes(r["xml"]).decode()}
            for r in rows], "next": nxt}))

    async def clock(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"now": hub.clock.now().isoformat(),
                                 "follow_real_time": hub.clock.follows_real_time})
        payload = await _json(request)
        if payload is None:
            return _error(400, "expected a JSON object")
        try:
            if "to" in payload:
                target = datetime.fromisoformat(str(payload["to"]))
                emitted = await run_in_threadpool(lambda: hub.advance(to=target))
            else:
                days = float(payload.get("advance_days", 0))
                seconds = float(payload.get("advance_seconds", 0)) + 86400 * days
                emitted = await run_in_threadpool(lambda: hub.advance(seconds=seconds))
        except (ConfigError, ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return JSONResponse({"now": hub.clock.now().isoformat(), "emitted": emitted})

    async def admin(request: Request) -> Response:
        bank = _bank(request)
        if bank is None:
            return _error(404, "unknown bank")
        what = request.path_params["what"]
        if request.method == "GET":
            views = {"transactions": bank.transactions, "accounts": bank.accounts,
                     "faults": lambda: bank.faults.model_dump(mode="json")}
            if what not in views:
                return _error(404, "unknown admin resource")
            return JSONResponse(await run_in_threadpool(views[what]))
        payload = await _json(request)
        if payload is None:
            return _error(400, "expected a JSON object")
        try:
            if what == "faults":
                return JSONResponse(bank.update_faults(payload).model_dump(mode="json"))
            if what == "statement-faults":
                account, fault = str(payload.pop("account", "")), str(payload.pop("fault", ""))
                return JSONResponse({"id": bank.add_statement_fault(account, fault, payload)})
        except (BankError, ValidationError) as exc:
            return _error(400, str(exc))
        return _error(404, "unknown admin resource")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "banks": sorted(hub.banks), "now": hub.clock.now().isoformat()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_tick(hub, tick_interval_s)) if tick_interval_s else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if owned:
            hub.close()

    app = Starlette(routes=[
        Route("/healthz", healthz),
        Route("/banks/{bic}/pacs008", pacs008, methods=["POST"]),
        Route("/banks/{bic}/messages", messages),
        Route("/admin/clock", clock, methods=["GET", "POST"]),
        Route("/admin/banks/{bic}/{what}", admin, methods=["GET", "POST"]),
    ], lifespan=lifespan)
    app.state.mockbank = hub
    return app


async def _json(request: Request) -> dict[str, Any] | None:
    """The JSON object body; None when the body is not one (the caller answers 400)."""
    try:
        payload = await request.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


async def _tick(hub: MockBank, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await run_in_threadpool(hub.process_due)
