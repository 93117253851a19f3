"""Database roles (writer, analyst, unmasker) and the append-only, hash-chained unmask audit log.

The three roles are NOLOGIN groups, created once per PostgreSQL cluster if missing; login
roles are made members of them (`GRANT loginetl_unmasker TO alice`). The audit chain is
computed by a trigger, so no client can choose its own sequence number, time, identity or
hash, and UPDATE, DELETE and TRUNCATE are refused even for the owner (who can disable the
trigger, which is what `loginetl audit verify` is there to catch).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLES = ("loginetl_writer", "loginetl_analyst", "loginetl_unmasker")

# One field: NULL -> "~", otherwise "<length>:<value>"; fields joined by "|". Mirrored in
# loginetl/core/audit_chain.py, which recomputes it.
_FIELD = "CASE WHEN {v} IS NULL THEN '~' ELSE length({v})::text || ':' || {v} END"
_CANONICAL = " || '|' || ".join(
    _FIELD.format(v=v)
    for v in (
        "NEW.seq::text",
        "to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        "NEW.db_role",
        "NEW.os_user",
        "NEW.client_addr",
        "NEW.client_host",
        "NEW.token",
        "NEW.pii_field",
        "NEW.reason",
        "NEW.outcome",
        "NEW.prev_hash",
    )
)


def upgrade() -> None:
    for role in ROLES:
        op.execute(
            f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    op.execute(
        """
        CREATE TABLE unmask_audit (
            seq         bigint      PRIMARY KEY,
            at          timestamptz NOT NULL,
            db_role     text        NOT NULL,
            os_user     text,
            client_addr text,
            client_host text,
            token       text        NOT NULL,
            pii_field   text,
            reason      text        NOT NULL,
            outcome     text        NOT NULL,
            prev_hash   text        NOT NULL,
            row_hash    text        NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX unmask_audit_at_idx ON unmask_audit (at)")
    op.execute(
        f"""
        CREATE FUNCTION unmask_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            last_seq  bigint;
            last_hash text;
        BEGIN
            -- One writer at a time, so the chain has no forks and seq no gaps.
            PERFORM pg_advisory_xact_lock(hashtext('loginetl.unmask_audit'));
            SELECT seq, row_hash INTO last_seq, last_hash
              FROM unmask_audit ORDER BY seq DESC LIMIT 1;
            NEW.seq := coalesce(last_seq, 0) + 1;
            NEW.prev_hash := coalesce(last_hash, repeat('0', 64));
            NEW.at := clock_timestamp();
            NEW.db_role := session_user;
            NEW.client_addr := coalesce(host(inet_client_addr()), 'local');
            NEW.row_hash := encode(sha256(convert_to({_CANONICAL}, 'UTF8')), 'hex');
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION unmask_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'unmask_audit is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER unmask_audit_chain BEFORE INSERT ON unmask_audit "
        "FOR EACH ROW EXECUTE FUNCTION unmask_audit_chain()"
    )
    op.execute(
        "CREATE TRIGGER unmask_audit_no_change BEFORE UPDATE OR DELETE ON unmask_audit "
        "FOR EACH ROW EXECUTE FUNCTION unmask_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER unmask_audit_no_truncate BEFORE TRUNCATE ON unmask_audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION unmask_audit_append_only()"
    )

    everyone = ", ".join(ROLES)
    op.execute("REVOKE ALL ON pii_vault, unmask_audit FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {everyone}")
    op.execute(f"GRANT SELECT ON alembic_version TO {everyone}")
    # consume: writes rows, vault entries and rollups; may never read the vault.
    op.execute("GRANT SELECT, INSERT ON user_logins, token_users TO loginetl_writer")
    op.execute("GRANT SELECT, INSERT, UPDATE ON token_stats, user_stats TO loginetl_writer")
    op.execute("GRANT INSERT ON pii_vault TO loginetl_writer")
    op.execute("GRANT USAGE ON SEQUENCE user_logins_id_seq TO loginetl_writer")
    # analysts: the masked data and the rollups; nothing of the vault or the audit log.
    op.execute(
        "GRANT SELECT ON user_logins, token_users, token_stats, user_stats TO loginetl_analyst"
    )
    # privacy staff: read the vault, append to (and read) the audit log.
    op.execute("GRANT SELECT ON pii_vault TO loginetl_unmasker")
    op.execute("GRANT SELECT, INSERT ON unmask_audit TO loginetl_unmasker")


def downgrade() -> None:
    everyone = ", ".join(ROLES)
    # The roles stay: they are cluster-wide and may serve other databases.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {everyone}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {everyone}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {everyone}")
    op.execute("DROP TABLE unmask_audit")
    op.execute("DROP FUNCTION unmask_audit_chain()")
    op.execute("DROP FUNCTION unmask_audit_append_only()")
