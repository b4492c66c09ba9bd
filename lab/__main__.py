"""`python -m lab up|down|preview [--stack lab] [--diff] [--replace PATTERN]`: the lab stack."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pulumi.errors import RunError

from components.errors import ConfigError
from components.tls import names_in_config

from . import tlsca
from .runner import Lab, LabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "preview"])
    parser.add_argument("--stack", default="lab")
    parser.add_argument("--diff", action="store_true", help="show what changes in each input")
    parser.add_argument("--replace", action="append", default=[], metavar="PATTERN",
                        help="run these steps again even if unchanged (like pulumi up --replace)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    lab = None
    try:
        lab = Lab(args.stack)
        if args.command == "up":
            return main_up(lab, args.diff, tuple(args.replace))
        if args.command == "preview":
            lab.preview(diff=args.diff, replace=tuple(args.replace))
        else:
            lab.down()
    except (ConfigError, RunError) as exc:
        # Like Pulumi: one line naming the key, no traceback; nothing was touched.
        print(f"error: {exc}", file=sys.stderr)
        if lab is not None:
            lab.discard_if_unused()
        return 2
    return 0


def main_up(lab: Lab, diff: bool, replace: tuple[str, ...]) -> int:
    try:
        outcome = lab.up(diff=diff, replace=replace)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = outcome.outputs
    time.sleep(1.5)  # let VRRP settle before asking who holds the VIPs
    for group, addresses in out["vips"].items():
        holders = lab.vip_holders(addresses[0], out["nodes"])
        label = "VIP" if len(out["vips"]) == 1 else f"VIP {group}"
        print(f"{label:<11} {', '.join(addresses)} (held by {', '.join(holders) or 'nobody yet'})")
    print(f"stats       {out['statsUrl']}  user admin, password in {lab.state_dir / 'stats-password'}")
    first = next(iter(out["vips"].values()))
    port = next((fe["bind"].rsplit(":", 1)[1] for fe in lab.base_config["haproxy-ha:haproxy"]["frontends"]
                 if fe.get("mode", "http") == "http" and not fe.get("tls") and not fe.get("redirectToHttps")), "80")
    for address in first:
        host = f"[{address}]" if ":" in address else address
        print(f"try         ip netns exec {lab.ns('cl')} curl -sg http://{host}:{port}/")
    for name in names_in_config(lab.base_config):
        host = f"{name}.{tlsca.DOMAIN}"
        print(f"https       ip netns exec {lab.ns('cl')} curl --cacert {tlsca.ca_paths(lab.tls_dir)[0]} "
              f"--resolve {host}:443:{out['vip']} https://{host}/")
    print(f"config      {json.dumps(out['configHashes'])}")
    print(f"took        {outcome.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
