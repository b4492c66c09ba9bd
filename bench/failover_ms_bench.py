"""Failover to the millisecond: HAProxy's death and node loss, seen on the wire.

Brings up its own lab cluster (stack `fmsbench`), measures, tears it down. Needs root.
    .venv/bin/python bench/failover_ms_bench.py [--trials N] [--advert-int S ...]
        [--detection | --hard-case N | --remedies] [--failure-detection fast|default|tolerant]

Method (lab/kit/wire.py): in the lab's client namespace a raw socket sends a TCP SYN to the VIP
every millisecond and an AF_PACKET socket records what arrives, with the kernel's receive
timestamps on CLOCK_MONOTONIC, the clock every namespace shares. The bench takes its own
timestamp right at the action: the SIGKILL of HAProxy's master and workers on the holder, or
the ioctl that sets the holder's bridge port down (its link cut: to the others it is a VM that
lost power or network; nothing it sends arrives any more, nothing reaches it). Per trial:
  kill -> priority-0 advert   the old holder's FAULT advert (HAProxy's death only)
  kill -> GARP                the new holder's gratuitous ARP for the VIP
  kill -> first SYN-ACK       the first answer to a probe SYN from the new holder's MAC
and beside it the client-seen outage of the existing benches (new connection per request,
4 workers, 5 ms apart, 0.1 s timeout: 0.1 s resolution). The probe's resolution is its SYN
cadence, printed as the gaps between SYN-ACKs in the half second before the action.

--detection measures each advert interval given (default 0.1 0.05 0.03 0.02): node loss, false
VRRP changes in the hard case (the holder's keepalived sharing one CPU with a busy loop, taskset,
30 s; then the same on a backup), during 10 keepalived and 10 HAProxy reloads, the longest
SIGSTOP of the holder's VRRP process that moves nothing, and keepalived's CPU time.
--hard-case N repeats only the holder's hard case, with the longest gap between its adverts and
the time the hypervisor took CPU 0 meanwhile (steal); --remedies runs it with the holder's
keepalived at nice 0, nice -20, autogroup nice -20 and SCHED_RR.
The machine has 2 cores shared with whatever else runs: medians and worst cases over trials.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import labctl  # noqa: E402
from lab.kit import probe, stall  # noqa: E402
from lab.kit.shape import NODES, SLOTS, VIP, VIP_URL, holders, restarted, settle  # noqa: E402
from lab.kit.stall import SharedCpu  # noqa: E402
from lab.kit.wire import Event, Wire, link_switch  # noqa: E402
from lab.stack import Lab  # noqa: E402
from tests.conftest import stack_config  # noqa: E402

HOLDER, NEXT = "k3s-lb-01", "k3s-lb-02"
MAC = {name: labctl.mac_for(address) for name, address in NODES.items()}


def ms(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e6


def first(events: list[Event], kind: str, mac: str, after: int, detail: int | None = None) -> int | None:
    for e in events:
        if e.kind == kind and e.mac == mac and e.at >= after and (detail is None or e.detail == detail):
            return e.at
    return None


def gaps_ms(events: list[Event], start: int, end: int) -> list[float]:
    """Gaps between the probe's SYN-ACKs in [start, end]: the probe's resolution."""
    times = [e.at for e in events if e.kind == "synack" and start <= e.at <= end]
    return sorted((b - a) / 1e6 for a, b in zip(times, times[1:], strict=False)) or [0.0]


def trial(lab: Lab, wire: Wire, action, restore) -> dict:
    """One failover under the probe and the client-seen load; figures in ms from the action."""
    wire.clear()
    with probe.Load(lab, VIP_URL, workers=4, interval=0.005, timeout=0.1) as load:
        time.sleep(0.5)
        at = action()
        try:
            probe.wait_for(lambda: NEXT in holders(lab), 10, interval=0.01)
            time.sleep(1.0)
            result = load.stop()
        finally:
            restore()
    events = wire.between(at - 600_000_000, at + 10_000_000_000)
    new = MAC[NEXT]
    garp = first(events, "garp", new, at)
    synack = first(events, "synack", new, at)
    fault = first(events, "vrrp", MAC[HOLDER], at, detail=0)
    return {
        "advert0": ms(fault - at) if fault else None,
        "garp": ms(garp - at) if garp else None,
        "synack": ms(synack - at) if synack else None,
        "client": max(result["outages"], default=0.0) * 1000 if result["failed"] else 0.0,
        "gaps": gaps_ms(events, at - 500_000_000, at),
    }


def haproxy_dies(lab: Lab, wire: Wire) -> dict:
    ns = lab.ns(SLOTS[HOLDER])

    (master,) = probe.main_pids(ns, "haproxy")

    def action() -> int:
        victims = [master, *probe.children(ns, master)]
        at = time.monotonic_ns()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # a worker of an earlier reload that has just finished
        return at

    def restore() -> None:
        restarted(ns, master)  # by its supervisor, a second later; settle() waits for the VIP's return

    out = trial(lab, wire, action, restore)
    settle(lab)
    return out


def node_lost(lab: Lab, wire: Wire) -> dict:
    switch = link_switch(lab.ns("br"), SLOTS[HOLDER])
    try:
        out = trial(lab, wire, lambda: switch.set(False), lambda: switch.set(True))
    finally:
        switch.set(True)
        switch.close()
    settle(lab)
    return out


def summary(name: str, runs: list[dict]) -> None:
    def stat(key: str) -> str:
        values = [r[key] for r in runs if r[key] is not None]
        missing = len(runs) - len(values)
        if not values:
            return "n/a"
        text = f"{statistics.median(values):.1f} / {max(values):.1f} ms"
        return text + (f" ({missing} not seen)" if missing else "")

    line = (f"{name} ({len(runs)} trials), median / worst: kill->GARP {stat('garp')}, "
            f"kill->first SYN-ACK {stat('synack')}; client-seen (0.1 s timeout) {stat('client')}")
    if any(r["advert0"] is not None for r in runs):
        line += f"; kill->priority-0 advert {stat('advert0')}"
    gaps = sorted(g for r in runs for g in r["gaps"])
    line += (f"; probe resolution, SYN-ACK gaps in the 0.5 s before: median {statistics.median(gaps):.2f} ms, "
             f"99th percentile {gaps[int(len(gaps) * 0.99)]:.2f} ms, worst {gaps[-1]:.2f} ms")
    print(line, flush=True)


# --- detection: trade-offs per advert interval ------------------------------------------------


def moves(lab: Lab) -> int:
    return sum(probe.vrrp_transitions(lab.ns(slot)) for slot in SLOTS.values())


def hard_case(lab: Lab, node: str, seconds: float = 30, loops: int = 1) -> int:
    """`loops` busy loops sharing CPU 0 with `node`'s keepalived for `seconds`: VRRP changes."""
    before = moves(lab)
    with SharedCpu(stall.keepalived_pids(lab.ns(SLOTS[node])), seconds, loops) as shared:
        shared.wait()
    time.sleep(1)
    return moves(lab) - before


def reloads(lab: Lab) -> int:
    """10 keepalived reloads then 10 HAProxy reloads on the holder: VRRP changes."""
    before = moves(lab)
    ns = lab.ns(SLOTS[HOLDER])
    for _ in range(10):
        probe.node_exec(ns, "rc-service keepalived reload")
        time.sleep(0.3)
    for _ in range(10):
        probe.reload_haproxy(ns)
        time.sleep(0.3)
    time.sleep(2.5)
    return moves(lab) - before


def stall_survived(lab: Lab, stalls_ms: list[int]) -> tuple[int, int | None]:
    """SIGSTOP the holder's VRRP process for each stall, shortest first: (the longest that moved
    nothing, the shortest that moved the VIP)."""
    survived = 0
    for stop_ms in stalls_ms:
        before = moves(lab)
        pid = stall.vrrp_pid(lab.ns(SLOTS[HOLDER]))
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stop_ms / 1000)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1)
        if moves(lab) != before:
            settle(lab)
            return survived, stop_ms
        survived = stop_ms
    return survived, None


def keepalived_cpu(lab: Lab, seconds: float = 20) -> float:
    """keepalived's CPU time per node (all its processes), % of one core, over `seconds` idle."""
    pids = {node: stall.keepalived_pids(lab.ns(SLOTS[node])) for node in SLOTS}
    start = {n: sum(probe.cpu_seconds(p) for p in ps) for n, ps in pids.items()}
    time.sleep(seconds)
    used = [sum(probe.cpu_seconds(p) for p in ps) - start[n] for n, ps in pids.items()]
    return 100 * max(used) / seconds


def advert_gaps(wire: Wire, mac: str, start: int, end: int) -> float:
    """The longest gap between a node's adverts in [start, end], ms: how long it was not scheduled."""
    times = [e.at for e in wire.between(start, end) if e.kind == "vrrp" and e.mac == mac and e.detail]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0) / 1e6


def with_remedy(lab: Lab, remedy: str) -> None:
    """Applied by hand to the holder's running keepalived (what the config options would set)."""
    for pid in stall.keepalived_pids(lab.ns(SLOTS[HOLDER])):
        if remedy == "nice -20":  # keepalived's vrrp_priority -20
            os.setpriority(os.PRIO_PROCESS, pid, -20)
        elif remedy == "SCHED_RR 1":  # keepalived's vrrp_rt_priority 1, without its RLIMIT_RTTIME
            os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(1))
        elif remedy == "autogroup nice -20":
            Path(f"/proc/{pid}/autogroup").write_text("-20")


def at_interval(base: dict, advert: float) -> dict:
    """The bench's stack config with this advert interval."""
    cfg = copy.deepcopy(base)
    cfg["haproxy-ha:cluster"]["advertInt"] = advert
    return cfg


def up_at(lab: Lab, base: dict, advert: float) -> None:
    """The cluster at this advert interval, settled."""
    lab.up(at_interval(base, advert))
    settle(lab, quiet=3)


def watched_hard_case(lab: Lab, wire: Wire, node: str, **kwargs) -> tuple[int, float]:
    """hard_case on `node`: its VRRP changes, and the longest gap between the holder's adverts (ms)."""
    wire.clear()
    start = time.monotonic_ns()
    changed = hard_case(lab, node, **kwargs)
    return changed, advert_gaps(wire, MAC[HOLDER], start, time.monotonic_ns())


def remedies(lab: Lab, wire: Wire, base: dict, adverts: list[float], seconds: float) -> None:
    """The hard case per advert interval and scheduling remedy: VRRP changes, longest advert gap."""
    for advert in adverts:
        cfg = at_interval(base, advert)
        for remedy in ("none", "nice -20", "autogroup nice -20", "SCHED_RR 1"):
            lab.up(cfg)
            probe.node_exec(lab.ns(SLOTS[HOLDER]), "rc-service keepalived restart")
            settle(lab, quiet=3)
            with_remedy(lab, remedy)
            changed, gap = watched_hard_case(lab, wire, HOLDER, seconds=seconds)
            print(f"remedy, advert_int {advert:g}, {remedy}: 1 busy loop sharing CPU 0 with the holder's "
                  f"keepalived for {seconds:g} s: {changed} VRRP changes, longest gap between its adverts "
                  f"{gap:.0f} ms", flush=True)
            if changed:
                settle(lab)


def steal_ms(cpu: int = 0) -> float:
    """Time the hypervisor has taken CPU `cpu` away from this machine so far (steal), ms."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return int(line.split()[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    return 0.0


def hard_cases(lab: Lab, wire: Wire, base: dict, adverts: list[float], repeats: int) -> None:
    """The holder's hard case `repeats` times per advert interval: VRRP changes, advert gaps."""
    for advert in adverts:
        up_at(lab, base, advert)
        for _ in range(repeats):
            stolen = steal_ms()
            changed, gap = watched_hard_case(lab, wire, HOLDER)
            print(f"hard case, advert_int {advert:g}: 1 busy loop sharing CPU 0 with the holder's keepalived "
                  f"for 30 s: {changed} VRRP changes; longest gap between its adverts {gap:.0f} ms; the "
                  f"hypervisor took CPU 0 for {steal_ms() - stolen:.0f} ms meanwhile (steal)", flush=True)
            if changed:
                settle(lab)


def detection(lab: Lab, wire: Wire, base: dict, adverts: list[float], trials: int) -> None:
    stalls = [20, 40, 60, 80, 100, 120, 150, 200, 300, 400]
    for advert in adverts:
        up_at(lab, base, advert)
        print(f"--- advert_int {advert:g} s", flush=True)
        summary(f"node lost, advert_int {advert:g}", [node_lost(lab, wire) for _ in range(trials)])
        summary(f"HAProxy killed, advert_int {advert:g}", [haproxy_dies(lab, wire) for _ in range(trials)])
        for node, loops in ((HOLDER, 1), (NEXT, 1), (HOLDER, 3)):
            changed, gap = watched_hard_case(lab, wire, node, loops=loops)
            print(f"hard case, advert_int {advert:g}: {loops} busy loop(s) sharing CPU 0 with {node}'s "
                  f"keepalived for 30 s: {changed} VRRP changes; longest gap between the holder's adverts "
                  f"{gap:.0f} ms", flush=True)
            if changed:
                settle(lab)
        changed = reloads(lab)
        print(f"reloads, advert_int {advert:g}: 10 keepalived + 10 HAProxy reloads on the holder: "
              f"{changed} VRRP changes", flush=True)
        if changed:
            settle(lab)
        survived, moved = stall_survived(lab, stalls)
        print(f"stall, advert_int {advert:g}: the holder's VRRP process stopped for {survived} ms moved "
              f"nothing; {moved or '>' + str(stalls[-1])} ms moved the VIP", flush=True)
        print(f"cpu, advert_int {advert:g}: keepalived uses {keepalived_cpu(lab):.2f} % of one core "
              "per node (the busiest node, idle cluster)", flush=True)




def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--advert-int", type=float, nargs="*", default=None,
                        help="advert intervals to measure (default: the stack's own)")
    parser.add_argument("--detection", action="store_true", help="the trade-offs per advert interval")
    parser.add_argument("--hard-case", type=int, default=0, metavar="N",
                        help="only the holder's hard case, N times per advert interval")
    parser.add_argument("--remedies", action="store_true", help="the hard case per scheduling remedy")
    parser.add_argument("--failure-detection", default=None, help="cluster.failureDetection for the lab stack")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab benchmarks need root")
    sys.setswitchinterval(0.0002)  # the probe's threads share the interpreter with the bench
    base = stack_config("lab")
    if args.failure_detection:
        base["haproxy-ha:cluster"]["failureDetection"] = args.failure_detection
    lab = Lab("fmsbench", base, log=lambda line: None)
    try:
        lab.up()
        settle(lab)
        wire = Wire(lab.ns("cl"), VIP, 5000)
        try:
            if args.hard_case:
                hard_cases(lab, wire, base, args.advert_int or [0.03], args.hard_case)
                return
            if args.remedies:
                remedies(lab, wire, base, args.advert_int or [0.03], 20)
                return
            if args.detection:
                detection(lab, wire, base, args.advert_int or [0.1, 0.05, 0.03, 0.02], max(args.trials // 2, 5))
                return
            for advert in args.advert_int or [None]:
                if advert is not None:
                    up_at(lab, base, advert)
                label = f"advert_int {advert:g}" if advert is not None else "the stack's settings"
                print(f"--- {label}", flush=True)
                summary(f"HAProxy killed on the holder, {label}", [haproxy_dies(lab, wire)
                                                                   for _ in range(args.trials)])
                summary(f"node lost (the holder's link cut), {label}", [node_lost(lab, wire)
                                                                        for _ in range(args.trials)])
        finally:
            wire.close()
    finally:
        lab.down()


if __name__ == "__main__":
    main()
