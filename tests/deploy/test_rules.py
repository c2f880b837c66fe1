"""The shipped Prometheus rules and configuration pass promtool; each alert fires and clears
in deploy/prometheus/alerts_test.yml."""

from __future__ import annotations

import subprocess

from .conftest import DEPLOY, tool

PROMETHEUS_DIR = DEPLOY / "prometheus"


def promtool(*args: str) -> str:
    done = subprocess.run(
        [tool("promtool"), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_are_valid() -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", "alerts.yml")


def test_each_alert_fires_and_clears_in_the_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_the_example_configuration_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_every_alert_has_a_unit_test() -> None:
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text()
    tests = (PROMETHEUS_DIR / "alerts_test.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(alerts) == 5
    for alert in alerts:
        assert f"alertname: {alert}" in tests, f"{alert} has no promtool unit test"
