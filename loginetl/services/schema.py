"""Table definitions for queries. The migrations own the DDL; these must match them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

user_logins = Table(
    "user_logins",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("idempotency_key", Text, nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("device_type", String(32), nullable=False),
    Column("masked_ip", String(80), nullable=False),
    Column("masked_device_id", String(80), nullable=False),
    Column("locale", String(32)),
    Column("app_version", Integer, nullable=False),
    Column("app_version_raw", String(16), nullable=False),
    Column("create_date", Date, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
)

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
)

token_users = Table(
    "token_users",
    metadata,
    Column("pii_field", String(16), primary_key=True),
    Column("token", String(80), primary_key=True),
    Column("user_id", String(128), primary_key=True),
)

token_stats = Table(
    "token_stats",
    metadata,
    Column("pii_field", String(16), primary_key=True),
    Column("token", String(80), primary_key=True),
    Column("users", BigInteger, nullable=False),
    Column("logins", BigInteger, nullable=False),
)

user_stats = Table(
    "user_stats",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("logins", BigInteger, nullable=False),
    Column("first_login", DateTime(timezone=True), nullable=False),
    Column("last_login", DateTime(timezone=True), nullable=False),
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
)
