"""A per-packet delay line for the network lab: what ``netem delay`` does, in user space,
for a kernel without netem (issue 16).

Run inside one namespace of the lab (``ip netns exec A python -m tests.netlab.delay_line
...``). It opens a TUN device; the lab routes the peer's address through it, so every IPv4
packet this namespace sends to the peer comes here, waits ``--delay-ms``, and leaves on the
veth through a packet socket addressed to the peer's MAC: the route is bypassed, so the
packet does not come back to the TUN. TCP and UDP alike, one packet at a time; nothing is
terminated or repaired here, so loss in transit (the lab's iptables DROP on the receiving
side) stays end to end. A TCP relay would split the connection and hide the loss.

The queue is bounded (``--max-packets``): past it packets are dropped, as a router's
buffer would. Prints ``ready`` once the TUN exists; ends at SIGTERM or when stdin closes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
ETH_P_IP = 0x0800
MAX_PACKET_BYTES = 65535


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"--peer-mac: expected six hex bytes like 02:00:00:00:00:01, got {mac!r}")
    return bytes(int(p, 16) for p in parts)


def run(tun_name: str, device: str, peer_mac: bytes, delay_s: float, max_packets: int) -> None:
    tun = open_tun(tun_name)
    out = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    out.bind((device, ETH_P_IP))
    address = (device, ETH_P_IP, 0, 0, peer_mac)
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()
    while not stop:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, packet = queue.popleft()
            with contextlib.suppress(OSError):  # the device's queue is full (tbf): dropped,
                out.sendto(packet, address)  # as on a real link
        timeout = max(0.0, queue[0][0] - now) if queue else None
        try:
            readable, _, _ = select.select([tun, stdin], [], [], timeout)
        except InterruptedError:
            continue
        if stdin in readable and not os.read(stdin, 4096):
            return  # the lab went away
        if tun in readable:
            packet = os.read(tun, MAX_PACKET_BYTES)
            if packet[:1] and packet[0] >> 4 == 4 and len(queue) < max_packets:
                queue.append((time.monotonic() + delay_s, packet))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tun", required=True, help="the TUN device to create")
    parser.add_argument("--device", required=True, help="the veth packets leave on")
    parser.add_argument("--peer-mac", required=True, help="the MAC of the veth's other end")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--max-packets", type=int, default=4096)
    args = parser.parse_args()
    if args.delay_ms < 0:
        parser.error(f"--delay-ms: expected 0 or more, got {args.delay_ms}")
    run(args.tun, args.device, mac_bytes(args.peer_mac), args.delay_ms / 1000, args.max_packets)


if __name__ == "__main__":
    main()
