"""Prometheus metrics and a /healthz endpoint for a running consumer.

Counters are read from the consumer's own tally at scrape time, so the numbers on the
endpoint are the numbers in the summary; only batch latency is observed as it happens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, Info, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loginetl import __version__

if TYPE_CHECKING:
    from loginetl.services.db import Backlog

Snapshot = Callable[[], Any]  # returns a ConsumeSummary-like object
Check = Callable[[], dict[str, str]]  # service name -> "ok" or a short error


class _ConsumeCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        s = self._snapshot()
        for name, value, help_text in (
            ("received", s.received, "Messages received from the queue"),
            ("loaded", s.loaded, "Rows inserted into user_logins"),
            ("duplicates_skipped", s.duplicates_skipped, "Messages already loaded (redelivery)"),
            ("transient_errors", s.transient_errors, "Retried SQS or database failures"),
            ("delete_failures", s.delete_failures, "Deletes SQS did not confirm"),
            (
                "forged_attributes_ignored",
                s.forged_attributes_ignored,
                "Messages whose loginetl-* attributes did not verify (SQS's own id and time used)",
            ),
        ):
            yield CounterMetricFamily(f"loginetl_consume_{name}", help_text, value=value)
        dead = CounterMetricFamily(
            "loginetl_consume_dead_lettered", "Messages sent to the DLQ", labels=["reason"]
        )
        for reason, count in s.dead_lettered_by_reason.items():
            dead.add_metric([reason], count)
        yield dead
        yield GaugeMetricFamily(
            "loginetl_consume_in_flight", "Messages received and not yet settled", value=s.in_flight
        )


class _ReadyCollector(Collector):
    """The /healthz verdict as gauges, so an alert needs no probe of its own."""

    def __init__(self, check: Check) -> None:
        self._check = check

    def collect(self) -> Iterable[Metric]:
        services = self._check()
        yield GaugeMetricFamily(
            "loginetl_consume_ready",
            "1 while /healthz answers 200: every service the consumer needs is reachable",
            value=1.0 if _ready(services) else 0.0,
        )
        up = GaugeMetricFamily(
            "loginetl_consume_service_up",
            "1 if the consumer reaches the service",
            labels=["service"],
        )
        for name, state in services.items():
            up.add_metric([name], 1.0 if state == "ok" else 0.0)
        yield up


def _ready(services: dict[str, str]) -> bool:
    return all(v == "ok" for v in services.values())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Served:
    """/metrics of ``collectors`` (and the build info), /healthz from ``check`` (cached, so
    scrapes do not hammer the services), on a background thread once started."""

    def __init__(
        self, *, host: str, port: int, check: _Cached, collectors: Iterable[Collector]
    ) -> None:
        self._check = check
        self.registry = CollectorRegistry()
        for collector in collectors:
            self.registry.register(collector)
        # loginetl_build_info{version="..."} 1: which build each replica runs (a rolling deploy).
        Info("loginetl_build", "The running loginetl build", registry=self.registry).info(
            {"version": __version__}
        )
        self._metrics_app = make_wsgi_app(self.registry)
        self._server: WSGIServer = make_server(host, port, self._app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            services = self._check()
            healthy = _ready(services)
            body = json.dumps({"ready": healthy, "services": services}).encode()
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return iter([body])
        return iter(self._metrics_app(environ, start_response))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MetricsServer(_Served):
    """consume's /metrics (counters, readiness, batch and lag histograms) and /healthz."""

    def __init__(self, *, host: str, port: int, snapshot: Snapshot, check: Check) -> None:
        cached = _Cached(check, seconds=5)
        super().__init__(
            host=host,
            port=port,
            check=cached,
            collectors=(_ConsumeCollector(snapshot), _ReadyCollector(cached)),
        )
        self.batch_seconds = Histogram(
            "loginetl_consume_batch_seconds",
            "Time to load and acknowledge one received batch",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.lag_seconds = Histogram(
            "loginetl_consume_lag_seconds",
            "End-to-end lag: from the original send (SQS SentTimestamp, or an SNS/EventBridge "
            "envelope's earlier time) to the commit of the message's row",
            registry=self.registry,
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400),
        )


class _Cached:
    """Run a health check at most every ``seconds``: scrapes must not hammer the services."""

    def __init__(self, check: Check, seconds: float) -> None:
        self._check, self._seconds = check, seconds
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._value: dict[str, str] = {}

    def __call__(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() - self._at >= self._seconds:
                self._value = self._check()
                self._at = time.monotonic()
            return self._value


Gauges = Callable[[], dict[str, tuple[str, float]]]  # name -> (help, value), read at scrape


def fold_gauges(backlog: Backlog | None) -> dict[str, tuple[str, float]]:
    """The fold worker's gauges, from its newest round's backlog (none before the first)."""
    if backlog is None:
        return {}
    return {
        "loginetl_fold_behind_seconds": (
            "Age of the oldest loaded row or vault entry not folded yet",
            backlog.behind_seconds,
        ),
        "loginetl_fold_pending_rows": ("Loaded rows not folded yet", backlog.pending_rows),
        "loginetl_fold_vault_pending": ("Vault entries not settled yet", backlog.inbox_entries),
    }


class _GaugeCollector(Collector):
    def __init__(self, read: Gauges) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, value) in self._read().items():
            yield GaugeMetricFamily(name, help_text, value=value)


class GaugeServer(_Served):
    """Serves /metrics of a few gauges read at scrape time (the fold worker's); /healthz
    answers 200 while the process runs."""

    def __init__(self, *, host: str, port: int, read: Gauges) -> None:
        super().__init__(
            host=host,
            port=port,
            check=_Cached(dict, seconds=5),
            collectors=(_GaugeCollector(read),),
        )
