"""The rollups recounted from user_logins: a test's independent check of the fold."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

# One count per rollup of the keys where it differs from a recount of user_logins (a key
# missing on either side counts too); all zeros when every rollup is exact. Hours and
# months in UTC, as the fold buckets them.
_MISMATCHES = {
    "token_stats": """
        SELECT 'ip' f, masked_ip t, count(DISTINCT user_id) u, count(*) n FROM user_logins GROUP BY 2
        UNION ALL
        SELECT 'device_id', masked_device_id, count(DISTINCT user_id), count(*) FROM user_logins GROUP BY 2
    """,
    "token_users": """
        SELECT 'ip' f, masked_ip t, user_id, count(*) n FROM user_logins GROUP BY 2, 3
        UNION ALL
        SELECT 'device_id', masked_device_id, user_id, count(*) FROM user_logins GROUP BY 2, 3
    """,
    "user_stats": "SELECT user_id, count(*) FROM user_logins GROUP BY 1",
    "rollup_totals": """
        SELECT 'users', count(DISTINCT user_id) FROM user_logins
        UNION ALL SELECT 'ip_tokens', count(DISTINCT masked_ip) FROM user_logins
        UNION ALL SELECT 'device_tokens', count(DISTINCT masked_device_id) FROM user_logins
    """,
    "rollup_breakdown": """
        SELECT 'device_type', device_type, count(*) FROM user_logins GROUP BY 2
        UNION ALL SELECT 'locale', locale, count(*) FROM user_logins GROUP BY 2
        UNION ALL SELECT 'app_version', app_version_raw, count(*) FROM user_logins GROUP BY 2
    """,
    "rollup_months": """
        SELECT date_trunc('month', create_date)::date, count(*) FROM user_logins GROUP BY 1
    """,
    "rollup_hourly": """
        SELECT date_trunc('hour', loaded_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*)
        FROM user_logins GROUP BY 1
    """,
}
_COLUMNS = {
    "token_stats": "pii_field, token, users, logins",
    "token_users": "pii_field, token, user_id, logins",
    "user_stats": "user_id, logins",
    "rollup_totals": "metric, value",
    "rollup_breakdown": "dimension, value, logins",
    "rollup_months": "month, logins",
    "rollup_hourly": "loaded_hour, logins",
}
ROLLUP_CHECK = "SELECT " + ",\n".join(
    f"(SELECT count(*) FROM (({recount}) EXCEPT ALL (SELECT {_COLUMNS[table]} FROM {table})"
    f" UNION ALL ((SELECT {_COLUMNS[table]} FROM {table}) EXCEPT ALL ({recount}))) d)"
    f" AS {table}"
    for table, recount in _MISMATCHES.items()
)
EXACT = (0,) * len(_MISMATCHES)


def rollup_mismatches(conn: Connection) -> dict[str, int]:
    """Per rollup, how many keys differ from a recount (all zero when exact)."""
    return dict(conn.execute(text(ROLLUP_CHECK)).one()._mapping)


def rollups_exact(conn: Connection) -> bool:
    """True if nothing is pending and the rollups equal a recount of the table."""
    pending = conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one()
    return pending == 0 and tuple(conn.execute(text(ROLLUP_CHECK)).one()) == EXACT


def pending(engine: Engine) -> int:
    """How many loaded rows the rollups do not count yet."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one())
