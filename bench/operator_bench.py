"""What an operator's service commands and a reboot cost, under load through the VIP.

Brings up its own lab cluster (stack `opbench`), measures, tears it down. Needs root.
    .venv/bin/python bench/operator_bench.py [--trials N]

Per action: VRRP state changes on all nodes, failed requests (new connection per request, 4
workers, 5 ms apart, 0.5 s timeout), the longest client-seen outage, and for a reboot the time
until the node holds the VIP again.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.kit import probe  # noqa: E402
from lab.kit.shape import SLOTS, VIP_URL, holders, settle  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402


def moves(lab: Lab) -> int:
    return sum(probe.vrrp_transitions(lab.ns(slot)) for slot in SLOTS.values())


def rc(lab: Lab, node: str, command: str) -> None:
    probe.node_exec(lab.ns(SLOTS[node]), f"rc-service {command}")


def measured(lab: Lab, action, wait_back: bool = False) -> dict:
    """Run `action` under load; VRRP changes, failed requests, worst outage, seconds until
    k3s-lb-01 holds the VIP again (when it lost it)."""
    before = moves(lab)
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005, timeout=0.5) as load:
        time.sleep(0.5)
        started = time.monotonic()
        action()
        back = None
        if wait_back:
            probe.wait_for(lambda: holders(lab) != ["k3s-lb-01"], 15, interval=0.005)
            probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 60, interval=0.02)
            back = time.monotonic() - started
        time.sleep(2)
        result = load.stop()
    settle(lab)
    return {"moves": moves(lab) - before, "failed": result["failed"], "total": result["total"],
            "outage": max(result["outages"], default=0.0), "back": back}


def reboot(lab: Lab, node: str) -> None:
    subprocess.run([sys.executable, "-m", "lab.labctl", "node-reboot", lab.prefix, SLOTS[node][1:], node],
                   cwd=ROOT, check=True, capture_output=True)


def ten(lab: Lab, command: str) -> None:
    for _ in range(10):
        rc(lab, "k3s-lb-01", command)
        time.sleep(0.3)


def sighups(lab: Lab) -> None:
    for _ in range(10):
        (parent,) = probe.main_pids(lab.ns(SLOTS["k3s-lb-01"]), "keepalived")
        os.kill(parent, 1)
        time.sleep(0.3)


def report(name: str, runs: list[dict]) -> None:
    line = (f"{name}: VRRP changes {sum(r['moves'] for r in runs)} in {len(runs)} trials; failed requests "
            f"{sum(r['failed'] for r in runs)} of {sum(r['total'] for r in runs)}; worst outage median "
            f"{statistics.median(r['outage'] for r in runs):.3f} s, max {max(r['outage'] for r in runs):.3f} s")
    backs = [r["back"] for r in runs if r["back"] is not None]
    if backs:
        line += f"; VIP back on the node after median {statistics.median(backs):.2f} s, max {max(backs):.2f} s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    base = stack_config("lab")
    changed = copy.deepcopy(base)
    # A keepalived.conf change on every node (a priority change that keeps the order changes nothing).
    changed["haproxy-ha:cluster"]["failureDetection"] = "tolerant"
    lab = Lab("opbench", base, log=lambda line: None)
    try:
        lab.up()
        settle(lab)
        print(f"cluster: 3 nodes, {args.trials} trials per action, advert_int 0.1 s", flush=True)
        t = range(args.trials)
        report("10 x rc-service haproxy reload on the holder", [measured(lab, lambda: ten(lab, "haproxy reload"))
                                                                 for _ in t])
        report("10 x rc-service keepalived reload on the holder",
               [measured(lab, lambda: ten(lab, "keepalived reload")) for _ in t])
        report("10 x SIGHUP to keepalived on the holder", [measured(lab, lambda: sighups(lab)) for _ in t])
        runs = []
        for trial in t:
            cfg = changed if trial % 2 == 0 else base
            runs.append(measured(lab, lambda cfg=cfg: lab.up(cfg)))
        report("pulumi up changing keepalived.conf (the advert interval)", runs)
        lab.up(base)
        settle(lab)
        report("rc-service haproxy-watch restart on every node", [measured(
            lab, lambda: [rc(lab, n, "haproxy-watch restart") for n in SLOTS]) for _ in t])
        report("rc-service haproxy restart on the holder", [measured(
            lab, lambda: rc(lab, "k3s-lb-01", "haproxy restart"), wait_back=True) for _ in t])
        report("rc-service keepalived restart on the holder", [measured(
            lab, lambda: rc(lab, "k3s-lb-01", "keepalived restart"), wait_back=True) for _ in t])
        report("reboot of a backup (k3s-lb-03)", [measured(lab, lambda: reboot(lab, "k3s-lb-03")) for _ in t])
        report("reboot of the VIP holder", [measured(lab, lambda: reboot(lab, "k3s-lb-01"), wait_back=True)
                                            for _ in t])
    finally:
        lab.down()


if __name__ == "__main__":
    main()
