"""settlement: exactly-once settlement worker pool (Kafka, Cassandra, ISO 20022)."""

__version__ = "0.1.0"
