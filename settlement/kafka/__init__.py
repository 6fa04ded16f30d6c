"""Kafka adapter: the transactional stage loop, error classification, admin."""
