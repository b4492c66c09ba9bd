"""A lab cluster for scenario tests under the real Pulumi engine: its own stack (own backend,
passphrase and config file), always destroyed."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lab.kit import probe
from lab.kit.shape import SLOTS, VIP_URL  # noqa: F401 - the tests import them from here
from lab.stack import Lab
from tests.conftest import stack_config

STATE_LOG = "/var/log/keepalived-state-change.log"

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "haproxy", "keepalived", "sshd", "nsenter")),
    reason="the lab needs root, iproute2, haproxy, keepalived, openssh-server (make setup)",
)


def new_lab(log=lambda line: None, config: dict | None = None) -> Lab:
    return Lab(f"t{uuid.uuid4().hex[:8]}", config or stack_config("lab"), log=log)


@contextmanager
def running_lab(config: dict | None = None) -> Iterator[Lab]:
    """A lab copy of the `lab` stack (or of `config`), up with the VIP on k3s-lb-01; always torn down."""
    lab = new_lab(config=config)
    try:
        lab.up()
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
        yield lab
    finally:
        lab.down()


def node_ns(lab: Lab, node: str) -> str:
    return lab.ns(SLOTS[node])


def holders(lab: Lab) -> list[str]:
    out = outputs(lab)
    return lab.vip_holders(out["vip"], out["nodes"])


def supervised(lab: Lab, node: str, daemon: str) -> bool:
    """The daemon's main process is a child of a supervise-daemon (its comm holds 15 characters)."""
    ns = node_ns(lab, node)
    (pid,) = probe.main_pids(ns, daemon)
    return any(pid in probe.children(ns, s) for s in probe.ns_pids(ns) if probe.comm(s) == "supervise-daemo")


def vrrp_state(lab: Lab, node: str) -> str:
    """The node's VRRP state as its notify script last wrote it (MASTER, BACKUP, FAULT)."""
    return probe.node_exec(node_ns(lab, node), "cat /run/haproxy-ha/vrrp-state", check=False).stdout.strip()


def logged_state(lab: Lab, node: str) -> str:
    """The state the node's notify script logged last (MASTER, BACKUP, FAULT), or "" before any."""
    lines = probe.node_exec(node_ns(lab, node), f"tail -n 1 {STATE_LOG}", check=False).stdout.split()
    return lines[lines.index("now") + 1] if "now" in lines else ""


def transitions(lab: Lab) -> dict[str, int]:
    """Each node's count of logged VRRP state changes, read once every change under way is logged.
    keepalived forks the notify script after it has moved the VIP, so a line lands a few ms after
    the move; a count read in between would charge that change to whatever the test does next."""
    def logged() -> bool:
        holding = holders(lab)
        return all(not any(probe.comm(p) == "notify.sh" for p in probe.ns_pids(node_ns(lab, n)))
                   and (logged_state(lab, n) == "MASTER") == (n in holding) for n in SLOTS)
    probe.wait_for(logged, 10)
    return {node: probe.vrrp_transitions(node_ns(lab, node)) for node in SLOTS}


def outputs(lab: Lab) -> dict:
    """The stack outputs of the last update (read once per lab: a `pulumi stack output` is ~1 s)."""
    cached = getattr(lab, "_outputs_cache", None)
    if cached is None or cached[0] != lab.config_file.stat().st_mtime_ns:
        cached = (lab.config_file.stat().st_mtime_ns, lab.outputs())
        lab._outputs_cache = cached  # type: ignore[attr-defined]
    return cached[1]


def node_states(lab: Lab) -> dict[str, dict]:
    """Each node's NodeState outputs as the state holds them (what the last read found)."""
    return {r["urn"].rsplit("::", 1)[1].removeprefix("haproxy-ha-").removesuffix("-state"): r.get("outputs", {})
            for r in lab.resources() if r["urn"].endswith("-state")}


# SO_REUSEADDR: the port's connections in TIME_WAIT do not stop it; a listener would.
SQUAT = """import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
while True:
    try:
        s.bind(("0.0.0.0", {port}))
        break
    except OSError:
        time.sleep(0.001)
s.listen()
print("bound", flush=True)
sys.stdin.read()
"""


class Squatter:
    """Another program on a node that takes `port` the moment HAProxy lets go of it: HAProxy then
    passes its config check and dies at every start ("cannot bind socket"). A context manager;
    it leaves when the block ends."""

    def __init__(self, lab: Lab, node: str, port: int):
        self.proc = subprocess.Popen(["nsenter", "-t", str(probe.init_pid(node_ns(lab, node))), "-a", "python3",
                                      "-c", SQUAT.format(port=port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def holds_port(self, timeout: float) -> None:
        """Wait until it has the port."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready and self.proc.stdout.readline().strip() == "bound", "the squatter never got the port"  # type: ignore[union-attr]

    def __enter__(self) -> Squatter:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
