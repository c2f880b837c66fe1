"""The `edgesight` command: help, and clear one-line errors for bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgesight.cli import main


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesight", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "node", "webapp"])
def test_help_lists_the_flags_and_their_variables(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    assert "--port" in result.stdout
    assert "EDGESIGHT_" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("node", "--port", "99999"), {}, "expected a port from 0 to 65535, got 99999"),
        (("node", "--port", "http"), {}, "expected a port number, got 'http'"),
        (("node",), {"EDGESIGHT_NODE_PORT": "x"}, "EDGESIGHT_NODE_PORT: expected an integer"),
        (("node", "--model", "/nowhere/model.onnx"), {}, "model file not found: /nowhere"),
        (("node", "--provider", "tpu"), {}, "invalid choice: 'tpu'"),
        (("webapp", "--node-url", "http://a/ws"), {}, "expected ws:// or wss:// URLs"),
        (("serve",), {"EDGESIGHT_MAX_BATCH_SIZE": "0"}, "EDGESIGHT_MAX_BATCH_SIZE"),
    ],
)
def test_bad_values_stop_with_a_message_naming_them(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = _run(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([], environ={})
    assert exit_info.value.code == 2
