"""Reconciliation: statements against what we sent (matching in `engine`, a run in `run`)."""
