"""The rollups recounted from user_logins: a test's independent check of the fold."""

from __future__ import annotations

from sqlalchemy import Connection, text

# Four zeros when token_stats and user_stats match a recount of user_logins exactly:
# (tokens whose counts differ, extra or missing tokens, users whose counts differ,
# extra or missing users).
ROLLUP_CHECK = """
SELECT
  (SELECT count(*) FROM (
     SELECT 'ip' f, masked_ip t, count(DISTINCT user_id) u, count(*) n FROM user_logins GROUP BY 2
     UNION ALL
     SELECT 'device_id', masked_device_id, count(DISTINCT user_id), count(*) FROM user_logins GROUP BY 2
     EXCEPT SELECT pii_field, token, users, logins FROM token_stats) missing),
  (SELECT count(*) FROM token_stats) - (SELECT count(DISTINCT masked_ip) + count(DISTINCT masked_device_id) FROM user_logins),
  (SELECT count(*) FROM (SELECT user_id, count(*) FROM user_logins GROUP BY 1
     EXCEPT SELECT user_id, logins FROM user_stats) u),
  (SELECT count(*) FROM user_stats) - (SELECT count(DISTINCT user_id) FROM user_logins)
"""


def rollups_exact(conn: Connection) -> bool:
    """True if nothing is pending and the rollups equal a recount of the table."""
    pending = conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one()
    return pending == 0 and tuple(conn.execute(text(ROLLUP_CHECK)).one()) == (0, 0, 0, 0)
