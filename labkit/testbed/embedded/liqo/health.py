"""Tunnel health check of the look-alike's gateways, with Liqo v0.10.2's rule and defaults.

Liqo's gateway (``pkg/liqonet/conncheck``) pings each peer every ``--gateway.ping-interval``
(2 s) and a disconnect observer, every interval x ``--gateway.ping-loss-threshold`` / 10
(2 s x 5 / 10 = 1 s), declares the peer down when more than interval x threshold (10 s)
passed since the last pong (plus its latency). :class:`HealthCheck` is that rule as a pure
state machine; :func:`icmp_ping` sends one ICMP echo over a raw socket (root, inside the
gateway's network namespace; Liqo uses its own UDP messages on port 12345). Run as a process
inside a root VM (``python -m labkit.testbed.embedded.liqo.health --config FILE``), it checks
every tunnel the config lists and publishes each state change to the tunnel's
``TunnelEndpoint`` status (``status.connection.status`` = ``Connected`` | ``Connecting`` |
``Error``, plus ``peerLatency`` and the time of the change), the object the virtual kubelet reads.

Config file (JSON, re-read when it changes)::

    {"kubeconfig": "/etc/kubernetes/admin.kubeconfig", "interval_s": 2.0, "loss_threshold": 5,
     "tunnels": [{"namespace": "liqo-tenant-b", "name": "tep-b", "peer": "169.254.100.2"}]}
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

#: Liqo v0.10.2 ``--gateway.ping-interval``.
PING_INTERVAL_S = 2.0
#: Liqo v0.10.2 ``--gateway.ping-loss-threshold``.
PING_LOSS_THRESHOLD = 5

CONNECTED, CONNECTING, ERROR = "Connected", "Connecting", "Error"

Pinger = Callable[[str, float], float | None]


@dataclass
class HealthCheck:
    """State of one tunnel's check, by Liqo's rule.

    Starts ``Connecting`` with the clock of the last pong set to its creation (as Liqo's
    receiver does when a peer is added); a pong makes it ``Connected``; :meth:`observe` makes it
    ``Error`` once more than ``interval_s x loss_threshold`` passed since the last pong plus
    its latency. Times are ``time.monotonic()`` seconds.
    """

    interval_s: float = PING_INTERVAL_S
    loss_threshold: int = PING_LOSS_THRESHOLD
    status: str = CONNECTING
    latency_ms: float | None = None
    last_pong: float = field(default_factory=time.monotonic)
    changed_at: float = field(default_factory=time.time)

    @property
    def window_s(self) -> float:
        """Seconds without a pong after which the peer is down (interval x threshold)."""
        return self.interval_s * self.loss_threshold

    @property
    def observe_every_s(self) -> float:
        """How often the disconnect observer looks (interval x threshold / 10)."""
        return self.window_s / 10

    def _set(self, status: str) -> bool:
        if status == self.status:
            return False
        self.status, self.changed_at = status, time.time()
        return True

    def pong(self, rtt_s: float, now: float | None = None) -> bool:
        """Record a pong after ``rtt_s`` seconds; return whether the status changed."""
        self.last_pong = time.monotonic() if now is None else now
        self.latency_ms = rtt_s * 1000
        return self._set(CONNECTED)

    def observe(self, now: float | None = None) -> bool:
        """Liqo's disconnect observer: ``Error`` when the last pong is too old; whether the status changed."""
        now = time.monotonic() if now is None else now
        latency = (self.latency_ms or 0.0) / 1000
        if now - (self.last_pong + latency) <= self.window_s:
            return False
        self.latency_ms = None
        return self._set(ERROR)

    @property
    def silent_s(self) -> float:
        """Seconds since the last pong."""
        return time.monotonic() - self.last_pong


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_ping(target: str, timeout: float, ident: int | None = None, seq: int = 1) -> float | None:
    """One ICMP echo to ``target``; the round-trip time in seconds, ``None`` when lost."""
    ident = (ident if ident is not None else os.getpid()) & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"labkit-liqo-gateway"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        start = time.monotonic()
        try:
            sock.sendto(packet, (target, 0))
        except OSError:  # no route (interface down)
            return None
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data, addr = sock.recvfrom(1024)
            except (TimeoutError, socket.timeout, OSError):
                return None
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident and rseq == seq and addr[0] == target:
                return time.monotonic() - start


def run_check(target: str, publish: Callable[[HealthCheck], None], stop: threading.Event,
              interval: float = PING_INTERVAL_S, loss_threshold: int = PING_LOSS_THRESHOLD,
              pinger: Pinger | None = None) -> HealthCheck:
    """Check ``target`` until ``stop``, as Liqo's gateway does; call ``publish`` on every change.

    A sender thread pings every ``interval`` (each ping waits at most ``0.9 x interval`` for its
    pong); this thread is the disconnect observer, every ``interval x loss_threshold / 10``.
    """
    state = HealthCheck(interval_s=interval, loss_threshold=loss_threshold)
    lock = threading.Lock()
    ident = (os.getpid() + threading.get_ident()) & 0xFFFF
    seq = [0]
    ping = pinger or (lambda t, to: icmp_ping(t, to, ident=ident, seq=seq[0]))
    publish(state)

    def sender() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            seq[0] = (seq[0] + 1) & 0xFFFF
            rtt = ping(target, interval * 0.9)
            if rtt is not None:
                with lock:
                    changed = state.pong(rtt)
                if changed:
                    publish(state)
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    while not stop.wait(state.observe_every_s):
        with lock:
            changed = state.observe()
        if changed:
            publish(state)
    thread.join(timeout=interval)
    return state


# --- the gateway process -------------------------------------------------------------------

def tunnel_endpoint_status(state: HealthCheck) -> dict:
    """The ``status`` of a TunnelEndpoint for ``state`` (Liqo's field names)."""
    stamp = datetime.fromtimestamp(state.changed_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    latency = f"{state.latency_ms:.3f}ms" if state.latency_ms is not None else ""
    return {"connection": {"status": state.status, "statusMessage": f"last pong {state.silent_s:.1f} s ago",
                           "peerLatency": latency, "lastTransitionTime": stamp}}


def _publisher(kubeconfig: str, namespace: str, name: str) -> Callable[[HealthCheck], None]:
    from kubernetes import client, config
    # not labkit.testbed.kubeapi's client: its backoff (up to 15 s) would hold this check's
    # thread; publish() keeps its own short retries, and the next change republishes
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))

    def publish(state: HealthCheck) -> None:
        body = {"status": tunnel_endpoint_status(state)}
        for _ in range(3):
            try:
                api.patch_namespaced_custom_object_status("net.liqo.io", "v1alpha1", namespace, "tunnelendpoints",
                                                          name, body)
                print(f"{time.strftime('%H:%M:%S')} {namespace}/{name}: {state.status}", flush=True)
                return
            except Exception as exc:  # apiserver busy: retry a little, the next change republishes
                print(f"publish {namespace}/{name} failed: {exc}", file=sys.stderr, flush=True)
                time.sleep(0.2)
    return publish


def serve(config_path: Path) -> None:
    """Run one check thread per tunnel of the config; restart them when the file changes."""
    stop, threads, mtime = threading.Event(), [], 0.0
    while True:
        current = config_path.stat().st_mtime
        if current != mtime:
            stop.set()
            for t in threads:
                t.join()
            stop, threads, mtime = threading.Event(), [], current
            cfg = json.loads(config_path.read_text())
            for tun in cfg["tunnels"]:
                pub = _publisher(cfg["kubeconfig"], tun["namespace"], tun["name"])
                t = threading.Thread(target=run_check, daemon=True, args=(tun["peer"], pub, stop),
                                     kwargs={"interval": cfg.get("interval_s", PING_INTERVAL_S),
                                             "loss_threshold": cfg.get("loss_threshold", PING_LOSS_THRESHOLD)})
                t.start()
                threads.append(t)
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m labkit.testbed.embedded.liqo.health``."""
    parser = argparse.ArgumentParser(description="Liqo-compatible gateway tunnel health check")
    parser.add_argument("--config", required=True, type=Path)
    serve(parser.parse_args(argv).config)


if __name__ == "__main__":
    main()
