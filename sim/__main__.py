"""`python -m sim up|preview|down|status [--standalone]`: the production path on this machine.

    up       the sim's PVE (fakepve: hosts r730, r630, r420), then `pulumi up` of a prod-shaped
             stack through the real Proxmox provider; its VMs boot as lab nodes
    preview  pulumi preview --diff
    down     pulumi destroy, then the PVE and whatever is left (both modes without --standalone/--cluster)
    status   the PVE's VMs and the nodes they booted
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from components.config.errors import ConfigError
from lab import engine
from lab.__main__ import settled_holders
from lab.stack import LabError

from .control import ControlError
from .stack import MODES, Sim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "preview", "status"])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", dest="mode", action="store_const", const="standalone",
                      help="three standalone PVE hosts, one API each (default: one PVE cluster)")
    mode.add_argument("--cluster", dest="mode", action="store_const", const="cluster")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the sim needs root (network namespaces)", file=sys.stderr)
        return 2
    try:
        if args.command == "down":
            for mode in [args.mode] if args.mode else list(MODES):
                sim = Sim(mode)
                if sim.state_dir.exists():
                    sim.down()
            return 0
        sim = Sim(args.mode or "cluster")
        if args.command == "up":
            return main_up(sim)
        if args.command == "preview":
            sim.configure()
            return sim.pulumi("preview", "--diff", check=False, capture=False).returncode
        for vm in sim.vms().values():
            print(f"{vm['api']:<10} {vm['vmid']:>6} {vm['name']:<12} {vm['node']:<6} {vm['status']}"
                  f"{' (lock ' + vm['lock'] + ')' if vm['lock'] else ''}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (LabError, ControlError, engine.EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main_up(sim: Sim) -> int:
    started = time.monotonic()
    if not sim.up_on_terminal():
        return 1
    out = sim.outputs()
    holders = settled_holders(sim, out["vip"], out["nodes"])
    print(f"PVE         {', '.join(f'{a.key}: https://127.0.0.1:{a.port}/' for a in sim.apis)} "
          f"(CA {sim.pve_dir / 'ca.pem'})")
    vms = [f"{name} {vm['vmid']}@{vm['node']}" for name, vm in sorted(sim.vms().items())]
    print(f"VMs         {', '.join(vms)}")
    print(f"VIP         {out['vip']} (held by {', '.join(holders) or 'nobody yet'})")
    print(f"try         ip netns exec {sim.ns('cl')} curl -s http://{out['vip']}:5000/")
    print(f"took        {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
