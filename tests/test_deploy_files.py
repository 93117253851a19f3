"""deploy/ agrees with the code: alert rules name real metrics, the manifest runs this build.

Schema validity and the rules' behaviour are `make deploy-check`'s job (promtool,
kubernetes-validate); these are the facts only the code knows.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from loginetl import __version__
from loginetl.services.db import Backlog
from loginetl.services.metrics import fold_gauges
from tests.services.test_metrics import scrape

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _exported_names() -> set[str]:
    """Metric names a running consumer's and a fold worker's /metrics really serve."""
    body = scrape(lambda: {"sqs": "ok"})
    consumer = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line[:1] != "#"}
    backlog = Backlog(0, None, 0, None, 0.0)
    return consumer | set(fold_gauges(backlog))


def test_alert_rules_use_only_metrics_loginetl_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = {name for expr in exprs for name in re.findall(r"\bloginetl_\w+", expr)}
    exported = _exported_names()
    assert "loginetl_build_info" in exported
    assert len(named) >= 5
    assert named - exported == set(), f"rules name metrics /metrics does not serve: {exported}"


def test_the_manifest_runs_this_version_and_probes_the_metrics_port() -> None:
    deployments = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())
        if d["kind"] == "Deployment"
    }
    assert set(deployments) == {"loginetl-consume", "loginetl-fold"}
    for deployment in deployments.values():
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert container["image"].rsplit(":", 1)[1] == __version__
        port = container["args"][container["args"].index("--metrics-port") + 1]
        assert str(container["readinessProbe"]["httpGet"]["port"]) == port
        assert template["metadata"]["annotations"]["prometheus.io/port"] == port
    fold = deployments["loginetl-fold"]["spec"]["template"]["spec"]["containers"][0]
    assert fold["args"][fold["args"].index("--log-format") + 2 :][:2] == ["fold", "--follow"]
    assert "loginetl_maintainer" in (DEPLOY / "kubernetes.yaml").read_text()
