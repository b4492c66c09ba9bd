"""A node heals itself: what a crash costs, from the kill to serving again and to the VIP's return.

Brings up its own lab cluster (stack `healbench`), measures, tears it down. Needs root.
    .venv/bin/python bench/heal_bench.py [--trials N] [--crash 'haproxy master' 'haproxy worker' keepalived]

Per crash (SIGKILL to HAProxy's master; to a HAProxy worker, as the OOM killer would; to
keepalived's parent) and node (the holder k3s-lb-01, the first backup k3s-lb-02), under load
through the VIP (a new connection per request, 4 workers, 5 ms apart, 0.5 s timeout):
  kill -> serving    HAProxy: a new master answers /healthz on the node's address;
                     keepalived: a new keepalived whose VRRP process logged BACKUP or MASTER
  kill -> VIP home   the VIP back on k3s-lb-01 (preempt); a crash on a backup never moves it
  VRRP changes on the other nodes, failed requests, the longest client-seen outage
The supervisor waits respawn_delay (HAProxy 1 s, keepalived 2 s: components/files/render.py
RESPAWN) before it starts a daemon again: most of each figure. Polled every 5 ms: that is the
resolution. Median and worst of N trials (default 10).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.kit import probe  # noqa: E402
from lab.kit.shape import NODES, SLOTS, VIP_URL, holders, settle  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402

HOME = "k3s-lb-01"
CRASHES = ("haproxy master", "haproxy worker", "keepalived")


def node_file(lab: Lab, node: str, path: str) -> str:
    """A file inside a node, read through its PID 1's root (no process started: fast to poll)."""
    try:
        return Path(f"/proc/{probe.init_pid(lab.ns(SLOTS[node]))}/root{path}").read_text().strip()
    except OSError:
        return ""


def haproxy_serves(lab: Lab, node: str, dead: int) -> bool:
    ns = lab.ns(SLOTS[node])
    if probe.main_pids(ns, "haproxy") in ([], [dead]):
        return False
    port = lab.base_config["haproxy-ha:haproxy"]["stats"]["port"]
    return probe.http_get(lab, f"http://{NODES[node]}:{port}/healthz", 0.2)[0] == 200


def last_state_line(lab: Lab, node: str) -> str:
    return node_file(lab, node, "/var/log/keepalived-state-change.log").rsplit("\n", 1)[-1]


def keepalived_runs(lab: Lab, node: str, dead: int, line_before: str) -> bool:
    """A new keepalived whose VRRP process has logged a state it serves in since the kill."""
    ns = lab.ns(SLOTS[node])
    pids = probe.main_pids(ns, "keepalived")
    if pids in ([], [dead]) or not probe.children(ns, pids[0]):
        return False
    last = last_state_line(lab, node)
    return last != line_before and last.split(" is now ")[-1].startswith(("BACKUP", "MASTER"))


def victim(lab: Lab, node: str, what: str) -> int:
    ns = lab.ns(SLOTS[node])
    (main,) = probe.main_pids(ns, "keepalived" if what == "keepalived" else "haproxy")
    return probe.children(ns, main)[0] if what == "haproxy worker" else main


def trial(lab: Lab, node: str, what: str) -> dict:
    ns = lab.ns(SLOTS[node])
    daemon = "keepalived" if what == "keepalived" else "haproxy"
    (main,) = probe.main_pids(ns, daemon)
    target = victim(lab, node, what)
    line_before = last_state_line(lab, node)
    others = {n: probe.vrrp_transitions(lab.ns(s)) for n, s in SLOTS.items() if n != node}
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005, timeout=0.5) as load:
        time.sleep(0.5)
        at = time.monotonic()
        os.kill(target, signal.SIGKILL)
        if daemon == "haproxy":
            probe.wait_for(lambda: haproxy_serves(lab, node, main), 20, interval=0.005)
        else:
            probe.wait_for(lambda: keepalived_runs(lab, node, main, line_before), 20, interval=0.005)
        serving = time.monotonic() - at
        home = None
        if node == HOME:
            probe.wait_for(lambda: holders(lab) != [HOME], 10, interval=0.005)
            probe.wait_for(lambda: holders(lab) == [HOME], 20, interval=0.005)
            home = time.monotonic() - at
        time.sleep(1.5)
        result = load.stop()
    changes = sum(probe.vrrp_transitions(lab.ns(SLOTS[n])) - c for n, c in others.items())
    settle(lab)
    return {"serving": serving, "home": home, "changes": changes,
            "failed": result["failed"], "total": result["total"], "outage": max(result["outages"], default=0.0)}


def report(name: str, runs: list[dict]) -> None:
    def stat(key: str) -> str:
        values = [r[key] for r in runs if r[key] is not None]
        return f"median {statistics.median(values):.2f} s, worst {max(values):.2f} s" if values else "n/a"

    print(f"{name} ({len(runs)} trials): kill -> serving {stat('serving')}; kill -> VIP home {stat('home')}; "
          f"VRRP changes on the other nodes {sum(r['changes'] for r in runs)}; failed requests "
          f"{sum(r['failed'] for r in runs)} of {sum(r['total'] for r in runs)}; longest outage {stat('outage')}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--crash", nargs="*", choices=CRASHES, default=list(CRASHES), help="which crashes to measure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    lab = Lab("healbench", stack_config("lab"), log=lambda line: None)
    try:
        lab.up()
        settle(lab)
        for what in args.crash:
            for node in (HOME, "k3s-lb-02"):
                role = "the holder" if node == HOME else "a backup"
                report(f"{what} killed on {role} ({node})", [trial(lab, node, what) for _ in range(args.trials)])
    finally:
        lab.down()


if __name__ == "__main__":
    main()
