"""Classify Kafka transaction errors the way librdkafka documents them.

retriable -> call again; abortable -> abort, rewind to the batch start, redo;
fatal -> the producer is unusable (fenced, or a bug): build a new one.
"""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError, KafkaException


class TxnErrorKind(Enum):
    RETRIABLE = "retriable"
    ABORTABLE = "abortable"
    FATAL = "fatal"


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def classify(exc: BaseException) -> TxnErrorKind:
    err = kafka_error(exc)
    if err is None:
        return TxnErrorKind.FATAL
    if err.fatal():
        return TxnErrorKind.FATAL
    if err.txn_requires_abort():
        return TxnErrorKind.ABORTABLE
    if err.retriable():
        return TxnErrorKind.RETRIABLE
    # Anything unclassified: the safe move is to abort and redo the batch.
    return TxnErrorKind.ABORTABLE
