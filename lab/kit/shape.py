"""The `lab` stack's shape, as the tests and benches poke it: the VIP, each node's address and
namespace slot, who holds the VIP, and waiting until the cluster is as `up` left it."""

from __future__ import annotations

import time

from ..stack import Lab
from . import probe

VIP = "192.0.2.100"
VIP_URL = f"http://{VIP}:5000/"
SLOTS = {"k3s-lb-01": "n11", "k3s-lb-02": "n12", "k3s-lb-03": "n13"}
NODES = {"k3s-lb-01": "192.0.2.11", "k3s-lb-02": "192.0.2.12", "k3s-lb-03": "192.0.2.13"}


def holders(lab: Lab) -> list[str]:
    return lab.vip_holders(VIP, NODES)


def settle(lab: Lab, quiet: float = 1.5) -> None:
    """The VIP back on k3s-lb-01 and answering, then `quiet` seconds for VRRP to calm down."""
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 30)
    probe.wait_for(lambda: probe.http_get(lab, VIP_URL, 1)[0] == 200, 10)
    time.sleep(quiet)


def restarted(ns: str, dead: int, daemon: str = "haproxy", timeout: float = 10) -> int:
    """Its supervisor has started the daemon again in node namespace `ns`: one main process other
    than `dead` (the one killed), with its child (HAProxy's worker, keepalived's VRRP process).
    Its PID."""
    def again() -> bool:
        pids = probe.main_pids(ns, daemon)
        return len(pids) == 1 and pids != [dead] and bool(probe.children(ns, pids[0]))
    probe.wait_for(again, timeout)
    return probe.main_pids(ns, daemon)[0]


def hand_vip_to(lab: Lab, name: str) -> None:
    """Without preempt, where failovers leave it: the VIP on `name`, after every other node's
    keepalived was stopped and started again (each back as a backup, which does not take it back)."""
    import subprocess

    out = lab.outputs()
    others = [n for n in out["nodes"] if n != name]

    def on(node: str, command: str) -> str:
        return subprocess.run([*lab.ssh_argv(out["nodes"][node]), command], check=True, capture_output=True,
                              text=True, timeout=60).stdout

    for node in others:
        on(node, "rc-service keepalived stop")
    probe.wait_for(lambda: lab.vip_holders(out["vip"], out["nodes"]) == [name], 10)
    for node in others:
        on(node, "rc-service keepalived start")
    # Each is a backup again (its notify script records the state it entered).
    probe.wait_for(lambda: all(set(on(n, "cat /run/haproxy-ha/state-*").split()) == {"BACKUP"} for n in others), 15)
    assert lab.vip_holders(out["vip"], out["nodes"]) == [name]
