"""Alembic environment and revisions; installed as the package ``loginetl._migrations``."""
