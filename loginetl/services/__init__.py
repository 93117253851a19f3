"""I/O adapters: SQS, PostgreSQL, key files, migrations. No printing here."""
