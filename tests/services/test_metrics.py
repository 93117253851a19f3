"""/metrics as Prometheus scrapes it: the build, and the /healthz verdict as gauges."""

from __future__ import annotations

import urllib.request

from loginetl import __version__
from loginetl.actions.consume import ConsumeSummary
from loginetl.services.db import Backlog
from loginetl.services.metrics import Check, GaugeServer, MetricsServer, fold_gauges


def scrape(check: Check) -> str:
    """The /metrics text of a real server over an idle consumer's counters."""
    summary = ConsumeSummary(
        **{name: 0 for name in ConsumeSummary.__dataclass_fields__}
        | {"dead_lettered_by_reason": {"invalid_ip": 1}, "stopped_because": ""}
    )
    server = MetricsServer(host="127.0.0.1", port=0, snapshot=lambda: summary, check=check)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    finally:
        server.stop()


def test_an_unreachable_service_reads_not_ready_and_names_the_service() -> None:
    body = scrape(lambda: {"postgresql": "ServiceUnavailable", "sqs": "ok"})
    assert "loginetl_consume_ready 0.0" in body
    assert 'loginetl_consume_service_up{service="postgresql"} 0.0' in body
    assert 'loginetl_consume_service_up{service="sqs"} 1.0' in body
    assert f'loginetl_build_info{{version="{__version__}"}} 1.0' in body


def test_all_services_reachable_reads_ready() -> None:
    assert "loginetl_consume_ready 1.0" in scrape(lambda: {"postgresql": "ok", "sqs": "ok"})


def test_the_fold_worker_serves_its_backlog_as_gauges() -> None:
    backlog = Backlog(
        pending_rows=7, pending_since=None, inbox_entries=2, inbox_since=None, behind_seconds=3.5
    )
    latest: list[Backlog] = []
    server = GaugeServer(
        host="127.0.0.1", port=0, read=lambda: fold_gauges(latest[-1] if latest else None)
    )
    server.start()

    def get(path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{server.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, str(response.read().decode())

    try:
        assert "loginetl_fold_behind_seconds" not in get("/metrics")[1]  # no round yet
        latest.append(backlog)
        body = get("/metrics")[1]
        assert get("/healthz")[0] == 200
    finally:
        server.stop()
    assert "loginetl_fold_behind_seconds 3.5" in body
    assert "loginetl_fold_pending_rows 7.0" in body
    assert "loginetl_fold_vault_pending 2.0" in body
    assert f'loginetl_build_info{{version="{__version__}"}} 1.0' in body
