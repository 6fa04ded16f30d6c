"""`settlement chaos`: the whole pipeline under seeded faults, then an independent check.

`plan` turns a seed into a fault schedule (pure), `inject` carries it out against the
worker processes, the local stack and the mock banks, and `checker` verifies the
invariants I1-I7 from what Kafka, Cassandra and the banks hold, sharing no code with
the workers (an import-linter contract keeps it that way).
"""
