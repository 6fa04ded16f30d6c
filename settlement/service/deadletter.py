"""Dead letters: the original bytes, with why and where in the headers."""

from __future__ import annotations

from datetime import UTC, datetime

from settlement.service.ports import InboundRecord, OutboundRecord

H_REASON = "dlq.reason"
H_DETAIL = "dlq.detail"
H_ERROR_CLASS = "dlq.error_class"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_WORKER = "dlq.worker"
H_FAILED_AT = "dlq.failed_at"
_MAX_DETAIL = 2000


def dead_letter(
    rec: InboundRecord, topic: str, code: str, detail: str, error_class: str, worker: str
) -> OutboundRecord:
    headers = [
        (H_REASON, code.encode()),
        (H_DETAIL, detail[:_MAX_DETAIL].encode()),
        (H_ERROR_CLASS, error_class.encode()),
        (H_TOPIC, rec.source.topic.encode()),
        (H_PARTITION, str(rec.source.partition).encode()),
        (H_OFFSET, str(rec.source.offset).encode()),
        (H_WORKER, worker.encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]
    # Keep the producer's own headers, so a replay of the dead letter is faithful.
    headers.extend((k, v) for k, v in rec.headers if not k.startswith("dlq."))
    return OutboundRecord(topic=topic, key=rec.key, value=rec.value or b"", headers=headers)


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for k, v in headers or []:
        if k == name:
            return v.decode("utf-8", "replace")
    return None
