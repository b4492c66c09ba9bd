"""`python -m components render STACK --out DIR`: render every node's files offline and check
them with the real daemons. Exit 0 when all pass, 1 when a daemon rejects a file, 2 when the
stack config is invalid (then nothing is written)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .model import ConfigError, build_cluster
from .render import RenderedFile, render_cluster, render_scripts
from .stackfile import PROJECT_DIR, SECRET_ENV, read_stack
from .validate import check_haproxy, check_keepalived, check_shell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render and validate every node's files")
    render.add_argument("stack")
    render.add_argument("--out", required=True, type=Path)
    render.add_argument("--no-validate", action="store_true", help="skip haproxy -c / keepalived -t")
    render.add_argument("--project", type=Path, default=PROJECT_DIR, help="folder holding Pulumi.STACK.yaml")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        stack = read_stack(args.stack, args.project)
        cluster = build_cluster(args.stack, stack.config, stack.secrets)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rendered = render_cluster(cluster)
    for key in stack.placeholders:
        print(f"note: {key} is a placeholder; set {SECRET_ENV[key]} to render the real value", file=sys.stderr)

    failures = 0
    for node_name, files in rendered.items():
        node_dir = args.out / node_name
        node_dir.mkdir(parents=True, exist_ok=True)
        scripts = tuple(f for f in files if f.name.endswith(".sh"))
        node = cluster.node(node_name)
        provisioning = tuple(
            RenderedFile(name, f"/node-scripts/{name}", "0755", text, secret=False)
            for name, text in render_scripts(cluster, node).items()
        )
        for f in files + provisioning:
            target = node_dir / f.name
            target.write_text(f.text)
            target.chmod(int(f.mode, 8))
            result = None
            if not args.no_validate:
                if f.name == "haproxy.cfg":
                    result = check_haproxy(f.text)
                elif f.name == "keepalived.conf":
                    result = check_keepalived(f, scripts, cluster.spec.cluster.interface)
                elif f.name.endswith(".sh"):
                    result = check_shell(f)
            print(f"{node_name:<20} {f.name:<18} {target}  {result or 'not validated'}")
            if result is not None and not result.ok:
                failures += 1
                print(result.detail, file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{len(rendered)} nodes rendered to {args.out} in {elapsed:.2f} s; {failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
