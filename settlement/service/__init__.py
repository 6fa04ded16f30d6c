"""Stage handlers and the ports they need. No Kafka or Cassandra imports here."""
