"""Statement files parsed in a second process, so parsing and matching use two cores.

Parsing a camt.053 (lxml plus one walk per entry) costs about four times what matching
costs, so a large file is read by a spawned child. It streams the header and entries back
in batches over a pipe, while the parent loads the expected side and matches. Spawned,
not forked: the parent holds a Cassandra session with driver threads. A refusal in the
child (malformed, DOCTYPE, ...) comes back as the same MessageRefusedError.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import threading
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


def peak_rss_kb() -> int:
    """This process's own peak RSS: VmHWM (ru_maxrss would include the parent's RSS at
    fork time, which Linux carries across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


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
        conn.send(("end", peak_rss_kb()))
    except MessageRefusedError as exc:
        conn.send(("refused", exc.code, exc.detail))
    except OSError as exc:
        conn.send(("error", f"cannot read: {exc}"))
    finally:
        conn.close()


class ChildParser:
    """A spawned parser of one file; a reader thread queues its batches (up to AHEAD of
    them), so the child can run ahead while the parent does something else."""

    AHEAD = 8  # batches: 16,000 entries ahead at most (memory is bounded)

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(str(path), max_bytes, child), daemon=True)
        self._proc.start()
        child.close()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(self.AHEAD)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._pump, name="recon-parser", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    message = ("died",)
                while not self._stop.is_set():
                    try:
                        self._queue.put(message, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if message[0] != "items":
                    return
        finally:
            self._conn.close()

    def items(self, progress: Callable[[int], None],
              peak_rss_kb: list[int]) -> Generator[StatementHeader | BookedLine, None, None]:
        """Raises MessageRefusedError as the in-process reader would, or OSError; appends
        the child's peak RSS (kB) to `peak_rss_kb` when it finishes."""
        try:
            while True:
                message = self._queue.get()
                kind = message[0]
                if kind == "items":
                    progress(message[2])
                    yield from message[1]
                elif kind == "end":
                    self._done = True
                    peak_rss_kb.append(int(message[1]))
                    return
                elif kind == "refused":
                    self._done = True
                    raise MessageRefusedError(message[1], message[2])
                elif kind == "died":
                    self._proc.join(5)
                    raise OSError(f"the parser of {self.path} died "
                                  f"(exit code {self._proc.exitcode})")
                else:
                    raise OSError(str(message[1]))
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if not self._done:  # closed early (the parent failed or gave up): don't wait for it
            self._proc.kill()
        self._proc.join(5)
        self._thread.join(5)

