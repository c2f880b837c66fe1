"""A real Prometheus (Debian's ``prometheus``) for the deploy tests: 127.0.0.1, a free port,
a private data directory, a 1 s scrape interval, the shipped alert rules loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import free_port, logged_process

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
READY_LINE = "Server is ready to receive web requests."


def tool(name: str) -> str:
    """A Prometheus binary; missing is a failure, not a skip, so CI cannot pass untested."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH: install Debian's prometheus (scripts/test.sh does)")
    return found


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[str]
    output: list[str]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now; None when it has no sample."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def start_prometheus(tmp_path: Path, targets: dict[str, str]) -> Iterator[Prometheus]:
    """``targets``: job name -> host:port. Yields once Prometheus says it is ready."""
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {"job_name": job, "scrape_timeout": "900ms", "static_configs": [{"targets": [t]}]}
            for job, t in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    argv = [
        tool("prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=info",
    ]
    with logged_process(argv, READY_LINE, "prometheus", timeout_s=30) as (process, output):
        yield Prometheus(f"http://127.0.0.1:{port}", process, output)
