"""/metrics as Prometheus scrapes it: the build, and the /healthz verdict as gauges."""

from __future__ import annotations

import urllib.request

from loginetl import __version__
from loginetl.actions.consume import ConsumeSummary
from loginetl.services.metrics import Check, MetricsServer


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
