"""The shipped alert rules: valid for Prometheus (`promtool check rules`), each alert firing in its own
`promtool test rules` case and quiet in the healthy one, the Kubernetes PrometheusRule carrying the same
groups, and every metric they watch one that the services export. promtool is Debian's (package
`prometheus`), fetched once into .kazru/tools without root (kazru/dev/debian_packages.py)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from kazru.dev.debian_packages import extracted_package
from kazru.observability import metrics
from tests import kustomize_render

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "kazru-alerts.rules.yml"
RULE_TESTS = MONITORING / "tests" / "kazru-alerts.test.yml"
COMPONENT = REPO / "deploy" / "k8s" / "components" / "alerts"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return extracted_package("prometheus", REPO / ".kazru" / "tools", "usr/bin/promtool") / "usr/bin/promtool"


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool):
    checked = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_unit_tests_pass(promtool):
    tested = subprocess.run([promtool, "test", "rules", RULE_TESTS], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_fires_in_a_case_and_is_quiet_when_healthy():
    names = {rule["alert"] for rule in alerts()}
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    healthy = next(case for case in cases if case["name"] == "a healthy service raises nothing")
    assert {t["alertname"] for t in healthy["alert_rule_test"] if t["exp_alerts"] == []} == names
    firing = {
        t["alertname"] for case in cases if case is not healthy for t in case["alert_rule_test"] if t["exp_alerts"]
    }
    assert firing == names
    for rule in alerts():
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


def test_the_rules_watch_metrics_the_services_export():
    # Counters are exposed with `_total`; a labelled metric nothing has set yet still has its family.
    families = {family.name for family in metrics.prometheus_client.REGISTRY.collect()}
    exported = families | {f"{name}_total" for name in families}
    for rule in alerts():
        for name in set(re.findall(r"\bkazru_[a-z_]+", rule["expr"])):
            assert name in exported, f"{rule['alert']} watches {name}, which nothing exports"


def test_the_kubernetes_component_carries_the_same_rules():
    with tempfile.TemporaryDirectory() as scratch:
        overlay = Path(scratch)
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "kazru",
            "resources": [str(REPO / "deploy" / "k8s" / "overlays" / "prod")], "components": [str(COMPONENT)],
        }))  # fmt: skip
        objects = kustomize_render.render(overlay)
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "kazru"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # Optional: no overlay includes it by default (it needs the Prometheus Operator's CRD).
    for overlay in ("dev", "prod", "gpu"):
        assert not [
            o for o in kustomize_render.render(REPO / "deploy/k8s/overlays" / overlay) if o["kind"] == "PrometheusRule"
        ]


def test_the_alertmanager_example_routes_critical_alerts_to_slack_and_email_without_secrets():
    config = yaml.safe_load((MONITORING / "alertmanager.example.yml").read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    critical = next(route for route in config["route"]["routes"] if 'severity="critical"' in route["matchers"])
    assert {"slack_configs", "email_configs"} <= set(receivers[critical["receiver"]])
    assert "slack_configs" in receivers[config["route"]["receiver"]]
    text = (MONITORING / "alertmanager.example.yml").read_text()
    assert "hooks.slack.com" not in text and not re.search(r"password:\s*[^<\s]", text)
