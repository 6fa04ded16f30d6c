"""Statement files parsed in a second process, so parsing and matching use two cores.

Parsing a camt.053 (lxml plus one walk per entry) costs about four times what matching
costs, so a large file is read by a spawned child. It streams the header and entries back
in batches over a pipe, while the parent loads the expected side and matches. Spawned,
not forked: the parent holds a Cassandra session with driver threads. A refusal in the
child (malformed, DOCTYPE, ...) comes back as the same MessageRefusedError.
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from settlement.domain.reconciliation import BookedLine
from settlement.iso20022.camt053 import StatementHeader, iter_camt053
from settlement.iso20022.camt054 import parse_entry_line
from settlement.iso20022.errors import MessageRefusedError

BATCH = 2000
PARALLEL_FROM_BYTES = 16 << 20  # smaller inputs are parsed in-process


class _Counted:
    def __init__(self, raw: Any) -> None:
        self.raw, self.read_bytes = raw, 0

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self.raw.read(size)
        self.read_bytes += len(chunk)
        return chunk


def _child(path: str, max_bytes: int, conn: Connection) -> None:
    """Parse `path` and send ("items", [..], bytes_read) batches, then ("end", rss_kb) or
    ("refused", code, detail) / ("error", text)."""
    try:
        with open(path, "rb") as raw:
            counted = _Counted(raw)
            batch: list[StatementHeader | BookedLine] = []
            for item in iter_camt053(counted, max_bytes=max_bytes, entry=parse_entry_line):  # type: ignore[arg-type]
                batch.append(item)
                if len(batch) >= BATCH:
                    conn.send(("items", batch, counted.read_bytes))
                    batch = []
            conn.send(("items", batch, counted.read_bytes))
        conn.send(("end", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    except MessageRefusedError as exc:
        conn.send(("refused", exc.code, exc.detail))
    except OSError as exc:
        conn.send(("error", f"cannot read: {exc}"))
    finally:
        conn.close()


def parse_in_child(path: Path, max_bytes: int, progress: Callable[[int], None],
                   peak_rss_kb: list[int]) -> Generator[StatementHeader | BookedLine, None, None]:
    """The items of `iter_camt053(path, entry=parse_entry_line)`, parsed by a child process.

    Raises MessageRefusedError as the in-process reader would, or OSError; the child's peak
    RSS (kB) is appended to `peak_rss_kb` when it finishes.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(path), max_bytes, child), daemon=True)
    proc.start()
    child.close()
    try:
        while True:
            try:
                message = parent.recv()
            except EOFError:
                raise OSError(f"the parser of {path} died (exit code {proc.exitcode})") from None
            kind = message[0]
            if kind == "items":
                progress(message[2])
                yield from message[1]
            elif kind == "end":
                peak_rss_kb.append(int(message[1]))
                return
            elif kind == "refused":
                raise MessageRefusedError(message[1], message[2])
            else:
                raise OSError(str(message[1]))
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        proc.close()
