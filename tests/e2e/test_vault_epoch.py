"""A running consumer (and a warm Lambda) after a purge of the vault (migration 0015).

Each caches the tokens it has sealed and stages no vault entry for them again. After
``forget`` purges a value's vault entry, meeting that value again must seal it again:
the new row's token is recoverable, not merely joinable.
"""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Callable

import pytest

from loginetl import lambda_handler
from loginetl.config import Settings
from loginetl.services import db, keys
from loginetl.services.sqs import SqsService
from tests.conftest import consume_process, finish
from tests.e2e.conftest import count_rows, wait_for
from tests.e2e.test_lambda import Mapping, cold_start, forget_runtime, lambda_env  # noqa: F401  (fixtures)
from tests.e2e.test_lifecycle import REASON, Publish, body, exact_after_fold, owner_rows, run

ERASED = "erase-me-epoch-1"
RETURNING = "came-back-later-2"
IP = "203.0.113.77"
DEVICE = "device-purged-then-seen-again"


def tokens(settings: Settings) -> dict[str, str]:
    masker = keys.load_masker(settings.keys_dir)
    return {
        IP: masker.token("ip", str(ipaddress.ip_address(IP))),
        DEVICE: masker.token("device_id", DEVICE),
    }


def in_vault(url: str, wanted: dict[str, str]) -> set[str]:
    """Which of these tokens the vault holds, once the fold worker has settled the inbox."""
    folder = db.make_engine(url, pool_size=1)
    try:
        db.settle_vault(folder, wait=True)
    finally:
        folder.dispose()
    return {
        str(t)
        for (t,) in owner_rows(
            url, "SELECT token FROM pii_vault WHERE token = ANY(:t)", t=list(wanted.values())
        )
    }


def forget(cli_env: dict[str, str], eraser_url: str) -> None:
    eraser = {**cli_env, "LOGINETL_DATABASE_URL": eraser_url}
    done = run(eraser, "forget", "--user-id", ERASED, "--reason", REASON)
    assert done.exit_code == 0, done.output
    assert "removed 1 logins" in done.stdout


def test_a_following_consumer_seals_a_value_again_after_forget_purged_it(
    cli_env: dict[str, str],
    settings: Settings,
    queues: tuple[str, str],
    publish: Publish,
    login_role: Callable[[str], str],
) -> None:
    url = settings.database_url
    token = tokens(settings)
    writer = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_writer")}
    follow = consume_process(writer, "--follow", "--workers", "1")
    try:
        publish([body(ERASED, IP, DEVICE)])
        wait_for(lambda: count_rows(url) == 1, timeout=60, what="the first login to load")
        assert in_vault(url, token) == set(token.values())
        forget(cli_env, login_role("loginetl_eraser"))
        assert in_vault(url, token) == set()  # purged: nothing references them
        # The same consumer, its cache holding both tokens, meets both values again.
        publish([body(RETURNING, IP, DEVICE), body(RETURNING, "198.51.100.3", "other-dev")])
        wait_for(lambda: count_rows(url) == 2, timeout=60, what="the later logins to load")
    finally:
        follow.send_signal(signal.SIGTERM)
        code, summary, err = finish(follow)
    assert code == 0, err
    assert summary["loaded"] == 3  # nothing lost, nothing dead-lettered
    assert summary["dead_lettered"] == 0
    assert in_vault(url, token) == set(token.values())  # sealed again: recoverable
    unmasker = {**cli_env, "LOGINETL_DATABASE_URL": login_role("loginetl_unmasker")}
    shown = run(unmasker, "unmask", token[IP], "--reason", "INC-90 check the reseal")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == IP
    assert exact_after_fold(url)


def test_a_warm_lambda_seals_a_value_again_after_forget_purged_it(
    cli_env: dict[str, str],
    settings: Settings,
    sqs: SqsService,
    queues: tuple[str, str],
    publish: Publish,
    login_role: Callable[[str], str],
    lambda_env: Callable[[Settings], dict[str, str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = settings.database_url
    token = tokens(settings)
    lambda_env(settings)
    monkeypatch.setenv("LOGINETL_DATABASE_URL", login_role("loginetl_writer"))
    forget_runtime()
    mapping = Mapping(sqs, queues[0])
    publish([body(ERASED, IP, DEVICE)])
    mapping.run()
    runtime = lambda_handler.runtime()
    assert set(token.values()) <= runtime.pipeline.loader.cache().tokens  # warm: cached
    forget(cli_env, login_role("loginetl_eraser"))
    assert in_vault(url, token) == set()
    publish([body(RETURNING, IP, DEVICE)])
    mapping.run()
    assert lambda_handler.runtime() is runtime  # the same warm runtime
    assert mapping.errors == 0
    assert mapping.reported == []
    assert count_rows(url) == 1
    assert in_vault(url, token) == set(token.values())
    assert exact_after_fold(url)
