"""What a host on the clients' LAN can do to the lab cluster, in figures: its scan with the
node firewall on and with every rule flushed (`nft flush ruleset` on each node, restored by
`rc-service nftables reload`), and, for each forged-advert attack, the failed requests, client
outages and VRRP state changes it causes under load. The same attacks as
tests/test_lan_attacks.py (lab/kit/intruder.py at 192.0.2.66), on multicast and unicast VRRP.

Brings up its own lab (stack `bench-attack`), measures, tears it down. Needs root.
    .venv/bin/python bench/attack_bench.py [--trials N]

Load: 2 workers through the VIP, a new connection 5 ms apart, 0.5 s timeout. Each attack: 3 s of
adverts at the cluster's advert interval (0.05 s) for the VIP's VRID, then 3 s to settle.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.kit import probe  # noqa: E402
from lab.kit.intruder import Intruder, scan  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402

SLOTS = {"k3s-lb-01": "n11", "k3s-lb-02": "n12", "k3s-lb-03": "n13"}
SECONDS, ADVERT_INT = 3, 0.05


def transitions(lab: Lab) -> int:
    return sum(probe.vrrp_transitions(lab.ns(slot)) for slot in SLOTS.values())


def attack(lab: Lab, intruder: Intruder, base: dict, priority: int, to: list[str], source: str | None) -> dict:
    cluster = base["haproxy-ha:cluster"]
    vip = cluster["vip"].split("/")[0]
    before = transitions(lab)
    with probe.Load(lab, f"http://{vip}:5000/", workers=2, interval=0.005, timeout=0.5) as load:
        adverts = intruder.adverts(vrid=cluster["virtualRouterId"], priority=priority, addresses=[vip], to=to,
                                   interval=ADVERT_INT, seconds=SECONDS, source=source)
        adverts.wait(60)
        time.sleep(3)
        result = load.stop()
    return {"failed": result["failed"], "outages": len(result["outages"]),
            "longest": max(result["outages"], default=0.0), "changes": transitions(lab) - before}


def report(label: str, runs: list[dict]) -> None:
    failed = [r["failed"] for r in runs]
    longest = [r["longest"] for r in runs]
    print(f"{label}: failed requests median {statistics.median(failed):g} (worst {max(failed)}), "
          f"longest outage median {statistics.median(longest):.2f} s (worst {max(longest):.2f} s), "
          f"VRRP state changes {[r['changes'] for r in runs]}", flush=True)


def scans(lab: Lab, intruder: Intruder, base: dict) -> None:
    nodes = [n["address"].split("/")[0] for n in base["haproxy-ha:cluster"]["nodes"]]
    targets = [base["haproxy-ha:cluster"]["vip"].split("/")[0], *nodes]
    ports = sorted({22, 8404, 21, 23, 3306, 8080,
                    *(int(f["bind"].rsplit(":", 1)[1]) for f in base["haproxy-ha:haproxy"]["frontends"])})
    print(f"scan of {targets} on ports {ports}", flush=True)
    print(f"  firewall on, from the clients' LAN: {sorted(intruder.scan(targets, ports))}", flush=True)
    print(f"  firewall on, from the admin network (the bastion): {sorted(scan(lab.ns('cl'), nodes, [22, 8404]))}",
          flush=True)
    for slot in SLOTS.values():
        probe.node_exec(lab.ns(slot), "nft flush ruleset")
    try:
        print(f"  every rule flushed, from the clients' LAN: {sorted(intruder.scan(targets, ports))}", flush=True)
    finally:
        for slot in SLOTS.values():
            probe.node_exec(lab.ns(slot), "rc-service nftables reload")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    base = stack_config("lab")
    nodes = {n["name"]: n["address"].split("/")[0] for n in base["haproxy-ha:cluster"]["nodes"]}
    lab = Lab("bench-attack", base, log=lambda line: None)
    try:
        lab.up()
        probe.wait_for(lambda: lab.vip_holders(lab.outputs()["vip"], lab.outputs()["nodes"]) == ["k3s-lb-01"], 30)
        with Intruder(lab) as intruder:
            scans(lab, intruder, base)
            for mode in ("multicast", "unicast"):
                if mode == "unicast":
                    config = copy.deepcopy(base)
                    config["haproxy-ha:cluster"]["unicast"] = True
                    lab.up(config)
                    time.sleep(3)
                to = ["224.0.0.18"] if mode == "multicast" else list(nodes.values())
                for priority in (254, 255):
                    report(f"{mode}, own address, priority {priority}",
                           [attack(lab, intruder, base, priority, to, None) for _ in range(args.trials)])
                spoof_to = to if mode == "multicast" else [nodes["k3s-lb-01"], nodes["k3s-lb-03"]]
                report(f"{mode}, claiming k3s-lb-02's address, priority 254",
                       [attack(lab, intruder, base, 254, spoof_to, nodes["k3s-lb-02"]) for _ in range(args.trials)])
    finally:
        lab.down()


if __name__ == "__main__":
    main()
