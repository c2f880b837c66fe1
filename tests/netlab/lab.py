"""A network lab: two network namespaces joined by a veth pair, with loss, delay and rate
set per test (issue 16). Everything is applied inside the lab's namespaces; the host's own
interfaces and its ``lo`` are never touched.

    A (10.78.0.1) ==== veth, MTU 1500, offloads off ==== B (10.78.0.2)

- **Loss**: an iptables ``statistic`` DROP in each namespace's INPUT chain for packets that
  came over the veth: loss in transit, both directions (a DROP in OUTPUT would make the
  sender's own send fail instead, which TCP treats differently).
- **Rate**: ``tbf`` on each veth end.
- **Delay**: ``netem`` where the kernel has it; otherwise a user-space delay line per
  namespace (``delay_line.py``: a TUN device the peer's address is routed through, one
  packet at a time, TCP and UDP alike). Half the round trip is added in each direction.

``Lab`` is a context manager; names are unique per lab (pid and a counter) and everything
is removed on exit, processes left in the namespaces included. ``LinkShape`` can change
while the lab runs (``lab.shape(...)``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "ADDRESS_A",
    "ADDRESS_B",
    "Lab",
    "LabError",
    "LinkShape",
    "missing_tools",
    "skip_without_tools",
]

ADDRESS_A = "10.78.0.1"
ADDRESS_B = "10.78.0.2"
DEVICE = "lab0"  # the veth end, same name in each namespace
TUN = "delay0"
MTU_BYTES = 1500
ROOT = Path(__file__).resolve().parents[2]
_labs = itertools.count()


class LabError(RuntimeError):
    """A lab command failed; the message names the command and what it printed."""


@dataclass(frozen=True)
class LinkShape:
    loss: float = 0.0  # the share of packets dropped in transit, each direction (0..1)
    round_trip_ms: float = 0.0  # delay added to every round trip, half each way
    rate_mbit: float | None = None  # each direction; None: as fast as the veth goes

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss: expected a share 0 <= loss < 1, got {self.loss}")
        if self.round_trip_ms < 0:
            raise ValueError(f"round_trip_ms: expected 0 or more, got {self.round_trip_ms}")
        if self.rate_mbit is not None and self.rate_mbit <= 0:
            raise ValueError(f"rate_mbit: expected a positive rate or None, got {self.rate_mbit}")


def missing_tools() -> str | None:
    """Why a lab cannot be made here, or None."""
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces; CI runs as root)"
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return f"the network lab needs {tool} (apt-get install iproute2 iptables)"
    if not Path("/dev/net/tun").exists():
        return "the network lab needs /dev/net/tun for its delay line"
    return None


def skip_without_tools() -> None:
    """Skip the calling test, saying why, where the lab cannot be made (not root, no tools)."""
    reason = missing_tools()
    if reason is not None:
        pytest.skip(reason)


def made_lab() -> Iterator[Lab]:
    """A lab for a module's tests (``pytest.fixture(scope="module")(made_lab)``), removed
    after them; the tests skip, saying why, where it cannot be made."""
    skip_without_tools()
    with Lab() as made:
        yield made


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class Lab:
    def __init__(self) -> None:
        n = next(_labs)
        self.a = f"es-lab-{os.getpid()}-{n}-a"
        self.b = f"es-lab-{os.getpid()}-{n}-b"
        self.current = LinkShape()
        self.delay = "none"  # "netem" or "delay line" once a delay was asked for
        self._delay_lines: list[subprocess.Popen[str]] = []
        self._is_netem: bool | None = None

    # -- set-up and tear-down ----------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ns(self, namespace: str, *argv: str) -> str:
        return _run("ip", "netns", "exec", namespace, *argv)

    def _create(self) -> None:
        _run("ip", "netns", "add", self.a)
        _run("ip", "netns", "add", self.b)
        # made straight inside the namespaces: no interface of the lab is ever in the host's
        _run(
            "ip",
            "link",
            "add",
            DEVICE,
            "netns",
            self.a,
            "mtu",
            str(MTU_BYTES),
            "type",
            "veth",
            "peer",
            "name",
            DEVICE,
            "netns",
            self.b,
            "mtu",
            str(MTU_BYTES),
        )
        for namespace, address in ((self.a, ADDRESS_A), (self.b, ADDRESS_B)):
            self.ns(namespace, "ip", "link", "set", "lo", "up")
            self.ns(namespace, "ip", "addr", "add", f"{address}/24", "dev", DEVICE)
            self.ns(namespace, "ip", "link", "set", DEVICE, "up")
            # packets from the peer arrive on the veth while the route to it may go through
            # the delay line's TUN: reverse-path filtering would drop them
            for conf in ("all", "default", DEVICE):
                # (written, not sysctl(8): procps is not on every machine the tests run on)
                knob = f"/proc/sys/net/ipv4/conf/{conf}/rp_filter"
                self.ns(namespace, "sh", "-c", f"echo 0 > {knob}")
            if shutil.which("ethtool"):
                # one MTU-sized segment per packet, as on a real link: loss hits segments
                self.ns(
                    namespace, "ethtool", "-K", DEVICE, "tso", "off", "gso", "off", "gro", "off"
                )

    def close(self) -> None:
        for line in self._delay_lines:
            _stop(line)
        self._delay_lines.clear()
        for namespace in (self.a, self.b):
            if not (Path("/var/run/netns") / namespace).exists():
                continue
            pids = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:  # whatever a test started in there and left
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)

    # -- the link ------------------------------------------------------------------------------
    def shape(self, shape: LinkShape) -> None:
        """Loss, delay and rate from now on (each direction)."""
        for namespace in (self.a, self.b):
            self.ns(namespace, "iptables", "-F", "INPUT")
            if shape.loss > 0:
                self.ns(
                    namespace,
                    "iptables",
                    "-A",
                    "INPUT",
                    "-i",
                    DEVICE,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    f"{shape.loss:.6f}",
                    "-j",
                    "DROP",
                )
        self._set_delay_and_rate(shape)
        self.current = shape

    def dropped_packets(self) -> int:
        """Packets the loss rules dropped so far, both directions."""
        total = 0
        for namespace in (self.a, self.b):
            listing = self.ns(namespace, "iptables", "-L", "INPUT", "-v", "-x", "-n")
            for line in listing.splitlines():
                fields = line.split()
                if len(fields) > 2 and fields[2] == "DROP":
                    total += int(fields[0])
        return total

    def _kernel_has_netem(self) -> bool:
        if self._is_netem is None:
            probe = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.a,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    DEVICE,
                    "root",
                    "netem",
                    "delay",
                    "1ms",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            self._is_netem = probe.returncode == 0
            if self._is_netem:
                self.ns(self.a, "tc", "qdisc", "del", "dev", DEVICE, "root")
        return self._is_netem

    def _set_delay_and_rate(self, shape: LinkShape) -> None:
        for line in self._delay_lines:
            _stop(line)
        self._delay_lines.clear()
        for namespace in (self.a, self.b):
            subprocess.run(
                ["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", DEVICE, "root"],
                capture_output=True,
                check=False,
            )
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    namespace,
                    "ip",
                    "route",
                    "del",
                    _peer(namespace == self.a),
                ],
                capture_output=True,
                check=False,
            )
        one_way_ms = shape.round_trip_ms / 2
        use_netem = one_way_ms > 0 and self._kernel_has_netem()
        for namespace in (self.a, self.b):
            parent = ["root"]
            if use_netem:
                self.ns(
                    namespace,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    DEVICE,
                    "root",
                    "handle",
                    "1:",
                    "netem",
                    "delay",
                    f"{one_way_ms}ms",
                    "limit",
                    "10000",
                )
                parent = ["parent", "1:1"]
            if shape.rate_mbit is not None:
                self.ns(
                    namespace,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    DEVICE,
                    *parent,
                    "tbf",
                    "rate",
                    f"{shape.rate_mbit}mbit",
                    "burst",
                    "32kbit",
                    "latency",
                    "100ms",
                )
        if one_way_ms > 0 and not use_netem:
            self._start_delay_line(self.a, True, one_way_ms)
            self._start_delay_line(self.b, False, one_way_ms)
        self.delay = "none" if one_way_ms == 0 else "netem" if use_netem else "delay line"

    def _start_delay_line(self, namespace: str, is_a: bool, one_way_ms: float) -> None:
        peer_namespace = self.b if is_a else self.a
        mac = self.ns(peer_namespace, "cat", f"/sys/class/net/{DEVICE}/address").strip()
        line = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                "tests.netlab.delay_line",
                "--tun",
                TUN,
                "--device",
                DEVICE,
                "--peer-mac",
                mac,
                "--delay-ms",
                str(one_way_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self._delay_lines.append(line)
        assert line.stdout is not None
        ready = line.stdout.readline()  # blocks until the TUN exists (or the line died)
        if ready.strip() != "ready":
            raise LabError(f"the delay line in {namespace} did not start: {ready!r}")
        own = ADDRESS_A if is_a else ADDRESS_B
        self.ns(namespace, "ip", "link", "set", TUN, "mtu", str(MTU_BYTES), "up")
        self.ns(namespace, "ip", "route", "replace", _peer(is_a), "dev", TUN, "src", own)


def _peer(is_a: bool) -> str:
    return f"{ADDRESS_B if is_a else ADDRESS_A}/32"


def _stop(line: subprocess.Popen[str]) -> None:
    if line.stdin is not None:
        line.stdin.close()
    try:
        line.wait(timeout=5)
    except subprocess.TimeoutExpired:
        line.kill()
        line.wait()
    if line.stdout is not None:
        line.stdout.close()
