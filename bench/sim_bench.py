"""The production path's figures, in the sim (real engine, real Proxmox provider, fakepve, VMs
booted as lab nodes after 3 s): median and worst of N runs of

- one `pulumi up` from an empty PVE to a VIP that serves (a fresh stack each run);
- a `pulumi up` with nothing to change;
- each day-two change under client load through the VIP (2 HTTP workers, a request every
  10 ms each): 512 -> 768 MiB; a new image; a fourth node added (preempt off); that node
  removed while it holds the VIP (handed to it the way failovers leave it without preempt).
  For each: the wall time of `up`, the failed requests, the outages the clients saw, and how
  often the VIP moved.

Needs root. Each run's stack is made and removed here.
    .venv/bin/python bench/sim_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.kit import probe, shape  # noqa: E402
from sim.stack import Sim  # noqa: E402

NEW_IMAGE = {"imageUrl": "https://dl-cdn.alpinelinux.org/alpine/v3.23/releases/cloud/"
                         "nocloud_alpine-3.23.2-x86_64-bios-cloudinit-r0.qcow2", "imageChecksum": "cd" * 64}


FOURTH = {"name": "k3s-lb-04", "host": "r730", "address": "192.0.2.14/24", "priority": 50}


def figure(name: str, values: list[float], unit: str = "s") -> None:
    print(f"{name}: median {statistics.median(values):.2f} {unit}, worst {max(values):.2f} {unit} "
          f"over {len(values)} runs ({', '.join(f'{v:.2f}' for v in values)})", flush=True)


class HolderWatch:
    """Who holds the VIP, every 50 ms, in a thread: the number of times it changed hands."""

    def __init__(self, sim: Sim, vip: str, nodes: dict[str, str]):
        self.sim, self.vip, self.nodes = sim, vip, nodes
        self.seen: list[tuple[str, ...]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            now = tuple(self.sim.vip_holders(self.vip, self.nodes))
            if not self.seen or self.seen[-1] != now:
                self.seen.append(now)
            time.sleep(0.05)

    def moves(self) -> int:
        self.stop.set()
        self.thread.join()
        held = [h for h in self.seen if len(h) == 1]
        return sum(1 for a, b in zip(held, held[1:], strict=False) if a != b)


def day_two(sim: Sim, config: dict) -> tuple[float, int, int, int]:
    out = sim.outputs()
    watch = HolderWatch(sim, out["vip"], {**out["nodes"], "k3s-lb-04": FOURTH["address"].split("/")[0]})
    with probe.Load(sim, f"http://{out['vip']}:5000/", workers=2, interval=0.01, timeout=2) as load:
        started = time.monotonic()
        sim.up(config)
        took = time.monotonic() - started
        said = load.stop()
    return took, said["failed"], len(said["outages"]), watch.moves()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    first, noop = [], []
    changes: dict[str, list] = {name: [] for name in (
        "memory", "image", "fourth node added", "fourth node, holding the VIP, removed")}
    for _ in range(args.runs):
        sim = Sim("cluster", stack=f"bsim{uuid.uuid4().hex[:6]}", log=lambda line: None)
        try:
            sim.configure()
            started = time.monotonic()
            sim.up()
            url = f"http://{sim.outputs()['vip']}:5000/"
            probe.wait_for(lambda sim=sim, url=url: probe.http_get(sim, url, 1)[0] == 200, 30)
            first.append(time.monotonic() - started)
            for _ in range(2):
                started = time.monotonic()
                sim.up()
                noop.append(time.monotonic() - started)
            vm = dict(sim.base_config["haproxy-ha:vm"])
            vm["memoryMiB"] = 768
            changes["memory"].append(day_two(sim, {"haproxy-ha:vm": vm}))
            vm = {**vm, **NEW_IMAGE}
            changes["image"].append(day_two(sim, {"haproxy-ha:vm": vm}))
            spec = {**sim.base_config["haproxy-ha:cluster"], "preempt": False}
            changes["fourth node added"].append(
                day_two(sim, {"haproxy-ha:vm": vm, "haproxy-ha:cluster": {**spec, "nodes": [*spec["nodes"], FOURTH]}}))
            shape.hand_vip_to(sim, "k3s-lb-04")
            changes["fourth node, holding the VIP, removed"].append(
                day_two(sim, {"haproxy-ha:vm": vm, "haproxy-ha:cluster": spec}))
        finally:
            sim.down()
    figure("empty PVE to a serving VIP (one pulumi up)", first)
    figure("pulumi up, nothing to change", noop)
    for name, runs in changes.items():
        figure(f"{name} change under load: pulumi up", [r[0] for r in runs])
        print(f"{name} change: failed requests {[r[1] for r in runs]}, client outages {[r[2] for r in runs]}, "
              f"VIP moves {[r[3] for r in runs]}", flush=True)


if __name__ == "__main__":
    main()
