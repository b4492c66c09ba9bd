"""`python -m lab up|preview|down|ssh|env [--stack lab]`: the lab stack, run by the real Pulumi CLI.

    up       pulumi up (first: stack init, secrets set with `pulumi config set --secret`)
    preview  pulumi preview --diff
    down     pulumi destroy, then remove what is left of the lab
    ssh      a root shell on a node over SSH (--node NAME), from the lab's client namespace
    env      shell exports: our pulumi on PATH, the stack's backend and passphrase
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from components.config.errors import ConfigError
from components.config.schema import load_stack
from components.model.model import referenced_certificates

from . import engine, tlsca
from .stack import Lab, LabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "preview", "ssh", "env"])
    parser.add_argument("--stack", default="lab")
    parser.add_argument("--node", help="with ssh: the node's name (default: the first)")
    args = parser.parse_args(argv)
    if args.command == "env":
        engine.prepare(Lab(args.stack).state_dir)
        sys.stdout.write(engine.shell_exports(Lab(args.stack).state_dir))
        return 0
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    lab = None
    try:
        lab = Lab(args.stack)
        if args.command == "up":
            return main_up(lab)
        if args.command == "preview":
            lab.configure()
            return lab.pulumi("preview", "--diff", check=False, capture=False).returncode
        if args.command == "ssh":
            return main_ssh(lab, args.node)
        lab.down()
    except ConfigError as exc:
        # Like Pulumi: one line naming the key, no traceback; nothing was touched.
        print(f"error: {exc}", file=sys.stderr)
        if lab is not None and not lab.applied():
            lab.remove_state()
        return 2
    except (LabError, engine.EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main_up(lab: Lab) -> int:
    started = time.monotonic()
    if not lab.up_on_terminal():
        return 1
    out = lab.outputs()
    for group, addresses in out["vips"].items():
        holders = settled_holders(lab, addresses[0], out["nodes"])
        label = "VIP" if len(out["vips"]) == 1 else f"VIP {group}"
        print(f"{label:<11} {', '.join(addresses)} (held by {', '.join(holders) or 'nobody yet'})")
    print(f"stats       {out['statsUrl']}  user admin, password in {lab.state_dir / 'stats-password'}")
    first = next(iter(out["vips"].values()))
    port = next((fe["bind"].rsplit(":", 1)[1] for fe in lab.base_config["haproxy-ha:haproxy"]["frontends"]
                 if fe.get("mode", "http") == "http" and not fe.get("tls") and not fe.get("redirectToHttps")), "80")
    for address in first:
        host = f"[{address}]" if ":" in address else address
        print(f"try         ip netns exec {lab.ns('cl')} curl -sg http://{host}:{port}/")
    # The frontends' certificates (not a bundle a backend's tls.ca only trusts: nothing serves it).
    for name in referenced_certificates(load_stack(lab.base_config)):
        host = f"{name}.{tlsca.DOMAIN}"
        print(f"https       ip netns exec {lab.ns('cl')} curl --cacert {tlsca.ca_paths(lab.tls_dir)[0]} "
              f"--resolve {host}:443:{out['vip']} https://{host}/")
    print(f"shell       make lab-ssh NODE={next(iter(out['nodes']))}")
    print(f"took        {time.monotonic() - started:.1f} s")
    return 0


def settled_holders(lab: Lab, vip: str, nodes: dict[str, str], seconds: float = 5) -> list[str]:
    """Who holds `vip` once exactly one node does (VRRP settles within a few adverts after a
    rollout), or, after `seconds`, whoever holds it then."""
    deadline = time.monotonic() + seconds
    while True:
        holders = lab.vip_holders(vip, nodes)
        if len(holders) == 1 or time.monotonic() > deadline:
            return holders
        time.sleep(0.05)


def main_ssh(lab: Lab, node: str | None) -> int:
    nodes = lab.outputs().get("nodes") or {}
    if not nodes:
        raise LabError(f"stack {lab.stack} has no nodes: run `make lab` first")
    name = node or next(iter(nodes))
    if name not in nodes:
        raise LabError(f"no node {name} (nodes: {', '.join(nodes)})")
    return subprocess.run(lab.ssh_argv(nodes[name])).returncode


if __name__ == "__main__":
    sys.exit(main())
