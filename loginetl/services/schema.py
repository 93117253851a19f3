"""Table definitions for the Core queries that use them (the vault and the audit log).

The migrations own the DDL; these must match them. The batch write uses plain SQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

pii_vault = Table(
    "pii_vault",
    metadata,
    Column("token", String(80), primary_key=True),
    Column("pii_field", String(16), nullable=False),
    Column("recipient", String(32), nullable=False),
    Column("ephemeral_public_key", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    schema="public",  # never a temporary table of the same name
)

unmask_audit = Table(
    "unmask_audit",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("db_role", Text, nullable=False),
    Column("os_user", Text),
    Column("client_addr", Text),
    Column("client_host", Text),
    Column("token", Text, nullable=False),
    Column("pii_field", Text),
    Column("reason", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("row_hash", Text, nullable=False),
    schema="public",
)
