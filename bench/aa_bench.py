"""Active-active, dual-stack benchmark on the lab-aa stack: the client-seen outage of one VIP
group, per address family, when its holder's HAProxy dies and when the holder's link is cut.

Brings up its own lab (stack `bench-aa`), measures, tears it down. Needs root.
    .venv/bin/python bench/aa_bench.py [--trials N]

Outage: from sending the first failed request to sending the next one that succeeds (4 workers
per family, 5 ms apart, 0.1 s timeout), on web-a's IPv4 and IPv6 addresses at the same time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.kit import probe  # noqa: E402
from lab.kit.shape import restarted  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402

HOLDER, NEXT, SLOT = "k3s-lb-01", "k3s-lb-02", "n11"


def url(address: str) -> str:
    return f"http://[{address}]:80/" if ":" in address else f"http://{address}:80/"


OUTPUTS: dict[str, dict] = {}


def outputs(lab: Lab) -> dict:
    """The stack outputs, read once (they do not change between updates)."""
    if lab.stack not in OUTPUTS:
        OUTPUTS[lab.stack] = lab.outputs()
    return OUTPUTS[lab.stack]


def web_a(lab: Lab) -> list[str]:
    return outputs(lab)["vips"]["web-a"]


def held_by(lab: Lab, node: str) -> bool:
    nodes = outputs(lab)["nodes"]
    return all(lab.vip_holders(a, nodes) == [node] for a in web_a(lab))


def outage(result: dict) -> float:
    return max(result["outages"], default=0.0) if result["failed"] else 0.0


def trial(lab: Lab, cut_link: bool) -> tuple[float, float]:
    """(IPv4 outage, IPv6 outage) when web-a's holder loses HAProxy or its link."""
    v4, v6 = web_a(lab)
    loads = [probe.Load(lab, url(a), workers=4, interval=0.005, timeout=0.1) for a in (v4, v6)]
    time.sleep(0.5)
    ns = lab.ns(SLOT)
    bridge = lab.ns("br")
    if cut_link:
        subprocess.run(["ip", "-n", bridge, "link", "set", SLOT, "down"], check=True)
    else:
        (dead,) = probe.kill(ns, "haproxy")
    try:
        probe.wait_for(lambda: held_by(lab, NEXT), 15)
        time.sleep(2.5 if cut_link else 1.5)
        results = [load.stop() for load in loads]
    finally:
        if cut_link:
            subprocess.run(["ip", "-n", bridge, "link", "set", SLOT, "up"], check=True)
    if not cut_link:
        restarted(ns, dead)  # by its supervisor
    probe.wait_for(lambda: held_by(lab, HOLDER), 30)
    time.sleep(1.5)
    return outage(results[0]), outage(results[1])


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.2f} s, worst {max(values):.2f} s over {len(values)} "
            f"trials ({', '.join(f'{v:.2f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    lab = Lab("bench-aa", stack_config("lab-aa"), log=lambda line: None)
    try:
        lab.up()
        probe.wait_for(lambda: held_by(lab, HOLDER), 30)
        time.sleep(1.5)
        print(f"lab-aa: 3 nodes, 3 dual-stack groups, trials {args.trials}; group web-a on {HOLDER}")
        for cut_link, what in ((False, "haproxy killed on the holder"), (True, "holder's link cut")):
            runs = [trial(lab, cut_link) for _ in range(args.trials)]
            print(summary(f"outage, IPv4, {what}", [v4 for v4, _ in runs]), flush=True)
            print(summary(f"outage, IPv6, {what}", [v6 for _, v6 in runs]), flush=True)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
