"""Lab benchmarks: failover outages, failed requests during rollouts, converge times.

Brings up its own lab cluster (stack `bench`), measures, tears it down. Needs root.
    .venv/bin/python bench/lab_bench.py [--trials N] [--advert-int S] [--only NAME ...]

Every figure is client-seen through the VIP from the lab's client namespace:
  outage = from sending the first failed request to sending the first one that succeeds after
  it (new connection per request, 4 workers, 5 ms apart each, 0.1 s timeout: a request to a
  node that vanished hangs until the timeout, so the timeout is the resolution).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import tlsca  # noqa: E402
from lab.kit import probe  # noqa: E402
from lab.kit.shape import SLOTS, VIP_URL, holders, restarted, settle  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402


def outage_of(result: dict) -> float:
    return max(result["outages"], default=0.0) if result["failed"] else 0.0


def haproxy_dies(lab: Lab, victim: str = "master") -> float:
    """`kill -9` of HAProxy's master, or of one of its workers, on the VIP holder."""
    ns = lab.ns(SLOTS["k3s-lb-01"])
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005, timeout=0.1) as load:
        time.sleep(0.5)
        (master,) = probe.main_pids(ns, "haproxy")
        os.kill(master if victim == "master" else probe.children(ns, master)[0], signal.SIGKILL)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 15)
        time.sleep(1.5)
        result = load.stop()
    restarted(ns, master)  # by its supervisor
    settle(lab)
    return outage_of(result)


def vip_moves(lab: Lab) -> int:
    """VRRP state changes logged on all nodes so far (each move is at least two)."""
    return sum(probe.vrrp_transitions(lab.ns(slot)) for slot in SLOTS.values())


def reloads(lab: Lab) -> tuple[int, int]:
    """Ten seamless reloads of the holder's HAProxy in a row, under load: (VIP moves, failed requests)."""
    ns = lab.ns(SLOTS["k3s-lb-01"])
    before = vip_moves(lab)
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005) as load:
        for _ in range(10):
            probe.reload_haproxy(ns)
            time.sleep(0.3)
        time.sleep(2.5)
        result = load.stop()
    return vip_moves(lab) - before, result["failed"]


def cpu_saturated(lab: Lab) -> tuple[int, int]:
    """30 s with one busy loop per CPU: (VIP moves, failed requests)."""
    before = vip_moves(lab)
    with probe.CpuBurn(30) as burn, probe.Load(lab, VIP_URL, workers=1, interval=0.05, timeout=2) as load:
        burn.wait()
        result = load.stop()
    return vip_moves(lab) - before, result["failed"]


def tls_handshakes(lab: Lab, resume: bool) -> float:
    """Handshakes per second one client thread completes through the VIP (ECDSA P-256)."""
    argv = ["ip", "netns", "exec", lab.ns("cl"), sys.executable, "-m", "lab.kit.tlsclient", "handshakes",
            "192.0.2.100", "443", "--cafile", str(tlsca.ca_paths(lab.tls_dir)[0]), "--seconds", "3"]
    out = subprocess.run([*argv, *(["--resume"] if resume else [])], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    if resume:
        assert result["reused"] == result["handshakes"], result
    return result["per_second"]


def certificate_rotation(lab: Lab) -> tuple[int, int, float]:
    """A renewed certificate rolled out under HTTPS load: (failed, total requests, seconds)."""
    tlsca.issue_for(lab.tls_dir, lab.stack, "www", "192.0.2.100")
    cafile = str(tlsca.ca_paths(lab.tls_dir)[0])
    with probe.Load(lab, "https://192.0.2.100/", workers=4, cafile=cafile) as load:
        time.sleep(0.3)
        started = time.monotonic()
        lab.up()
        seconds = time.monotonic() - started
        time.sleep(0.3)
        result = load.stop()
    return result["failed"], result["total"], seconds


def refresh_seconds(lab: Lab) -> float:
    """`pulumi refresh`: the engine reads every resource, each node's live state among them (what
    `refresh: always` adds to a preview or an up)."""
    started = time.monotonic()
    lab.pulumi("refresh", "--yes", "--skip-preview")
    return time.monotonic() - started


def preview_seconds(lab: Lab) -> float:
    """`pulumi preview` with nothing to change (its refresh included)."""
    started = time.monotonic()
    lab.pulumi("preview", "--expect-no-changes")
    return time.monotonic() - started


def noop_up_seconds(lab: Lab) -> float:
    """`pulumi up` with nothing to change (refresh included)."""
    started = time.monotonic()
    outcome = lab.up()
    assert outcome.executed == [], outcome.executed
    return time.monotonic() - started


def watcher_cost(lab: Lab) -> str:
    """CPU and memory haproxy-watch has used on the holder since it started (a 1-core node's share)."""
    (pid,) = probe.main_pids(lab.ns(SLOTS["k3s-lb-01"]), "haproxy-watch")
    alive, cpu = probe.age_seconds(pid), probe.cpu_seconds(pid)
    return (f"haproxy-watch on the holder: {cpu:.2f} s CPU in {alive:.0f} s alive "
            f"({100 * cpu / alive:.3f} % of one core), RSS {probe.rss_mib(pid):.1f} MiB")


def node_dies(lab: Lab) -> float:
    bridge = lab.ns("br")
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005, timeout=0.1) as load:
        time.sleep(0.5)
        subprocess.run(["ip", "-n", bridge, "link", "set", SLOTS["k3s-lb-01"], "down"], check=True)
        try:
            probe.wait_for(lambda: "k3s-lb-02" in holders(lab), 15)
            time.sleep(2.5)
            result = load.stop()
        finally:
            subprocess.run(["ip", "-n", bridge, "link", "set", SLOTS["k3s-lb-01"], "up"], check=True)
    settle(lab)
    return outage_of(result)


def rollout(lab: Lab, configs: list[dict], trial: int, nice: int = 0) -> dict:
    """A config-only change (a backend server added or removed) under load: 6 client threads as
    fast as they go, which with HAProxy and the backends take both cores; with `nice`, the
    clients yield the CPU to the deployment, as clients on other machines would."""
    cfg = configs[trial % 2]
    with probe.Load(lab, VIP_URL, workers=4, nice=nice) as fresh, \
            probe.Load(lab, VIP_URL, workers=2, keepalive=True, nice=nice) as kept:
        time.sleep(0.3)
        started = time.monotonic()
        outcome = lab.up(cfg)
        seconds = time.monotonic() - started
        time.sleep(0.3)
        new, ka = fresh.stop(), kept.stop()
    applies = [n for n in outcome.executed if "apply-haproxy" in n]
    assert len(applies) == 3, applies
    return {"seconds": seconds, "new": new, "keepalive": ka}


def empty_to_serving(lab: Lab) -> float:
    lab.down()
    started = time.monotonic()
    lab.up()
    probe.wait_for(lambda: probe.http_get(lab, VIP_URL, 1)[0] == 200, 30, interval=0.05)
    seconds = time.monotonic() - started
    settle(lab)
    return seconds


def summary(name: str, values: list[float], unit: str = "s") -> str:
    """Median and worst: the largest time, or the smallest rate (a unit per second)."""
    worst = min(values) if unit.startswith("/") else max(values)
    return (f"{name}: median {statistics.median(values):.2f} {unit}, worst {worst:.2f} {unit} "
            f"over {len(values)} trials ({', '.join(f'{v:.2f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--advert-int", type=float, default=None)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    base = stack_config("lab")
    if args.advert_int is not None:
        base["haproxy-ha:cluster"]["advertInt"] = args.advert_int
    grown = copy.deepcopy(base)
    grown["haproxy-ha:haproxy"]["backends"][1]["servers"].append({"name": "app3", "address": "192.0.2.23:8080"})
    wanted = set(args.only or ["haproxy", "worker", "node", "reloads", "cpu", "refresh", "tls", "rollout", "empty"])

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"{subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout.splitlines()[0]}")
    lab = Lab("bench", base, log=lambda line: None)
    try:
        lab.up()
        settle(lab)
        advert = base["haproxy-ha:cluster"].get("advertInt", "default")
        print(f"cluster: 3 nodes, advert_int {advert}, trials {args.trials}")
        if "haproxy" in wanted:
            print(summary("outage, haproxy killed on the VIP holder",
                          [haproxy_dies(lab) for _ in range(args.trials)]), flush=True)
        if "worker" in wanted:
            print(summary("outage, one haproxy worker killed on the VIP holder",
                          [haproxy_dies(lab, "worker") for _ in range(args.trials)]), flush=True)
        if "node" in wanted:
            print(summary("outage, VIP holder's link cut (node lost)",
                          [node_dies(lab) for _ in range(args.trials)]), flush=True)
        if "reloads" in wanted:
            runs = [reloads(lab) for _ in range(args.trials)]
            print(f"VRRP state changes during 10 reloads in a row: {sum(m for m, _ in runs)} in {len(runs)} trials "
                  f"(worst {max(m for m, _ in runs)}); failed requests {sum(f for _, f in runs)}", flush=True)
        if "cpu" in wanted:
            runs = [cpu_saturated(lab) for _ in range(args.trials)]
            print(f"VRRP state changes during 30 s of CPU saturation ({os.cpu_count()} busy loops): "
                  f"{sum(m for m, _ in runs)} in {len(runs)} trials (worst {max(m for m, _ in runs)}); "
                  f"failed requests {sum(f for _, f in runs)}", flush=True)
        if wanted & {"haproxy", "worker", "reloads", "cpu"}:  # its cost over those failovers
            print(watcher_cost(lab), flush=True)
        if "refresh" in wanted:
            print(summary("pulumi refresh (every resource; the 3 nodes' live state read)",
                          [refresh_seconds(lab) for _ in range(args.trials)]), flush=True)
            print(summary("pulumi preview, nothing to change",
                          [preview_seconds(lab) for _ in range(args.trials)]), flush=True)
            print(summary("pulumi up, nothing to change",
                          [noop_up_seconds(lab) for _ in range(args.trials)]), flush=True)
        if "tls" in wanted:
            print(summary("TLS full handshakes per second (one client thread, ECDSA P-256)",
                          [tls_handshakes(lab, resume=False) for _ in range(args.trials)], "/s"), flush=True)
            print(summary("TLS resumed handshakes per second (session tickets)",
                          [tls_handshakes(lab, resume=True) for _ in range(args.trials)], "/s"), flush=True)
            runs = [certificate_rotation(lab) for _ in range(args.trials)]
            print(f"certificate rotation under HTTPS load: {sum(f for f, _, _ in runs)} failed of "
                  f"{sum(t for _, t, _ in runs)} requests ({', '.join(f'{f}/{t}' for f, t, _ in runs)})", flush=True)
            print(summary("certificate rotation across 3 nodes", [s for _, _, s in runs]), flush=True)
        for nice in ((0, 19) if "rollout" in wanted else ()):
            clients = "clients at nice 19" if nice else "clients at nice 0"
            runs = [rollout(lab, [grown, base], t, nice) for t in range(args.trials)]
            for kind in ("new", "keepalive"):
                failed = sum(r[kind]["failed"] for r in runs)
                total = sum(r[kind]["total"] for r in runs)
                per = ", ".join(f"{r[kind]['failed']}/{r[kind]['total']}" for r in runs)
                print(f"rolling config change ({clients}), {kind} connections: {failed} failed of {total} "
                      f"requests ({per})")
            print(summary(f"config-only rollout across 3 nodes ({clients})", [r["seconds"] for r in runs]),
                  flush=True)
            lab.up(base)
            settle(lab)
        if "empty" in wanted:
            print(summary("empty to serving (lab stack)", [empty_to_serving(lab) for _ in range(args.trials)]))
    finally:
        lab.down()


if __name__ == "__main__":
    main()
