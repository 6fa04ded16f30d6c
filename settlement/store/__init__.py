"""Cassandra adapter: session, migrations, ledger and registry stores."""
