"""consume as a real process, interrupted: a database outage and a SIGTERM lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable

from sqlalchemy import create_engine, text

from loginetl.config import Settings
from loginetl.services.sqs import SqsService
from tests.conftest import LOGINETL, consume_process, database_name, finish
from tests.e2e.conftest import INVALID_BODIES, count_rows, drain, wait_for

Publish = Callable[[list[str]], None]


def set_connections(admin_url: str, database: str, *, allowed: bool) -> None:
    """Take our own test database offline (or back): new connections refused, old ones killed."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
    engine.dispose()


def test_database_outage_mid_run_loses_nothing(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(4000, 21)
    publish(bodies + INVALID_BODIES)
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    name = database_name(settings.database_url)
    process = consume_process(
        cli_env, "--workers", "2", "--idle-exit", "3", "--retry-seconds", "60"
    )
    try:
        wait_for(lambda: count_rows(settings.database_url) > 300, what="first rows")
        set_connections(admin, name, allowed=False)
        time.sleep(4)  # an outage: every write fails and is retried with back-off
        set_connections(admin, name, allowed=True)
        code, summary, err = finish(process)
    finally:
        set_connections(admin, name, allowed=True)
        if process.poll() is None:
            process.kill()
    assert code == 0, err
    assert summary["transient_errors"] > 0  # type: ignore[operator]
    assert count_rows(settings.database_url) == len(bodies)
    assert summary["dead_lettered"] == len(INVALID_BODIES)
    depth = sqs.depth(queues[0])
    assert (depth.visible, depth.in_flight) == (0, 0)
    assert len(drain(sqs, queues[1])) == len(INVALID_BODIES)


def test_sigterm_mid_run_commits_the_batch_in_hand_and_loses_nothing(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    valid_bodies: Callable[..., list[str]],
) -> None:
    bodies = valid_bodies(3000, 22)
    publish(bodies)
    process = consume_process(cli_env, "--follow", "--workers", "4")
    wait_for(lambda: count_rows(settings.database_url) > 200, what="first rows")
    process.send_signal(signal.SIGTERM)
    code, summary, err = finish(process, timeout=30)
    assert code == 0, err
    assert summary["stopped_because"] == "stop_requested"
    loaded_before = count_rows(settings.database_url)
    assert loaded_before == summary["loaded"]
    assert loaded_before < len(bodies)
    depth = sqs.depth(queues[0])
    assert depth.in_flight == 0  # nothing left hidden: the rest was released
    assert depth.visible == len(bodies) - loaded_before
    # A second run picks up exactly the rest.
    rest = subprocess.run(
        [LOGINETL, "consume", "--json", "--idle-exit", "2"],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    second = json.loads(rest.stdout.strip().splitlines()[-1])
    assert second["duplicates_skipped"] == 0
    assert count_rows(settings.database_url) == len(bodies)
