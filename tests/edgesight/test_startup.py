"""Start-up: a port in use is one line naming its setting; uvicorn's duplicate start-up
lines are dropped."""

from __future__ import annotations

import logging
import socket

import pytest

from edgesight.cli import main
from edgesight.startup import PortInUse, _Once, bind_listener


def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as info:
            bind_listener("127.0.0.1", port, "the web app", "--port or EDGESIGHT_PORT")
    message = str(info.value)
    assert message == (
        f"the web app cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(choose another with --port or EDGESIGHT_PORT, or stop what is using it)"
    )
    assert "\n" not in message


def test_serve_exits_with_that_line_and_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken, socket.socket() as spare:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spare.bind(("127.0.0.1", 0))
        node_port = spare.getsockname()[1]
        spare.close()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["serve", "--port", str(port), "--node-port", str(node_port)], environ={})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgesight: error: the web app cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_node_on_a_port_in_use_names_its_flag_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["node", "--port", str(port)], environ={})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"edgesight: error: the node cannot listen on 127.0.0.1:{port}: the port is already in "
        "use (choose another with --port or EDGESIGHT_NODE_PORT, or stop what is using it)\n"
    )


def test_a_free_port_is_bound_and_listenable() -> None:
    sock = bind_listener("127.0.0.1", 0, "the node", "--node-port")
    try:
        sock.listen()
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, None, None)


def test_uvicorn_start_up_chatter_is_said_once() -> None:
    once = _Once()
    said = [
        m
        for m in (
            "Started server process [7]",
            "Waiting for application startup.",
            "Started server process [7]",
            "Application startup complete.",
            "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
        )
        if once.filter(record(m))
    ]
    assert said == [
        "Started server process [7]",
        "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
    ]
