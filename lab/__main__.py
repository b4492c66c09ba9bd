"""`python -m lab up|down|preview [--stack lab] [--diff] [--replace PATTERN]`: the lab stack."""

from __future__ import annotations

import argparse
import os
import sys

from pulumi.errors import RunError

from components.errors import ConfigError

from .runner import Lab, main_up


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


if __name__ == "__main__":
    sys.exit(main())
