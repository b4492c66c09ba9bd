"""`python -m components render STACK --out DIR`: render every node's files offline and check
them with the real daemons. Exit 0 when all pass, 1 when a daemon rejects a file, 2 when the
stack config is invalid (then nothing is written), 3 when `--also-debian13` was asked for but
the Debian 13 root could not be built."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config.errors import ConfigError
from .config.vridcheck import check_vrids, other_stacks
from .files.daemons13 import DEFAULT_ROOT, ROOT_ENV, RootBuildError, ensure_root
from .files.render import RenderedFile, placeholder_ticket_keys, render_cluster, render_scripts
from .files.validate import (
    HOST,
    CheckResult,
    Daemons,
    check_haproxy,
    check_keepalived,
    check_logrotate,
    check_openrc,
    check_python,
    check_rsyslog,
    check_shell,
    debian13,
)
from .model.model import Cluster, build_cluster
from .stackfile import PROJECT_DIR, SECRET_ENV, TLS_DIR_ENV, read_stack

ALSO_DEBIAN13_HELP = (
    "also check haproxy.cfg and keepalived.conf with Debian 13's HAProxy 3.0 and keepalived 2.3 "
    "(the series production's Alpine 3.21 runs), chrooted into a cached Debian 13 root at "
    f"${ROOT_ENV} (default {DEFAULT_ROOT}); the root is built first if missing (debootstrap, "
    "about 40 s and 300 MB, needs root). Exit 3 if it cannot be built."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m components")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render and validate every node's files")
    render.add_argument("stack")
    render.add_argument("--out", required=True, type=Path)
    render.add_argument("--project", type=Path, default=PROJECT_DIR, help="folder holding Pulumi.STACK.yaml")
    validation = render.add_mutually_exclusive_group()
    validation.add_argument("--no-validate", action="store_true", help="skip haproxy -c / keepalived -t")
    validation.add_argument("--also-debian13", action="store_true", help=ALSO_DEBIAN13_HELP)
    return parser.parse_args(argv)


def check_file(f: RenderedFile, node_files: tuple[RenderedFile, ...], cluster: Cluster,
               daemon_sets: tuple[Daemons, ...]) -> list[CheckResult]:
    """Daemon configs are judged by every daemon set asked for; scripts by the shell checkers."""
    scripts = tuple(n for n in node_files if n.name.endswith(".sh"))
    if f.name == "haproxy.cfg":
        return [check_haproxy(f.text, daemons, node_files) for daemons in daemon_sets]
    if f.name == "keepalived.conf":
        return [check_keepalived(f, scripts, cluster.spec.cluster.interface, daemons) for daemons in daemon_sets]
    if f.name == "rsyslog.conf":
        return [check_rsyslog(f.text)]
    if f.name == "logrotate-haproxy":
        return [check_logrotate(f.text)]
    if f.name == "haproxy-watch":
        return [check_python(f)]
    if f.name.endswith(".initd"):
        return [check_openrc(f)]
    if f.name.endswith(".sh"):
        return [check_shell(f)]
    return []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        stack = read_stack(args.stack, args.project)
        cluster = build_cluster(args.stack, stack.config, stack.secrets)
        check_vrids(cluster.spec, other_stacks(args.project, args.stack))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    daemon_sets: tuple[Daemons, ...] = () if args.no_validate else (HOST,)
    if args.also_debian13:
        try:
            daemon_sets += (debian13(ensure_root()),)
        except RootBuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    rendered = render_cluster(cluster)
    for key in stack.placeholders:
        how = SECRET_ENV.get(key) or f"{TLS_DIR_ENV} to a folder holding {key.partition('.')[2]}.pem"
        print(f"note: {key} is a placeholder; set {how} to render the real value", file=sys.stderr)

    failures = 0
    for node_name, files in rendered.items():
        node_dir = args.out / node_name
        node_dir.mkdir(parents=True, exist_ok=True)
        if cluster.uses_tls:
            files += (placeholder_ticket_keys(cluster),)
        node = cluster.node(node_name)
        provisioning = tuple(
            RenderedFile(name, f"/node-scripts/{name}", "0755", text, secret=False)
            for name, text in render_scripts(cluster, node).items()
        )
        for f in files + provisioning:
            target = node_dir / f.name
            target.write_text(f.text)
            target.chmod(int(f.mode, 8))
            results = check_file(f, files, cluster, daemon_sets) if daemon_sets else []
            print(f"{node_name:<20} {f.name:<18} {target}  {'; '.join(map(str, results)) or 'not validated'}")
            for result in results:
                if not result.ok:
                    failures += 1
                    print(f"{result.tool}:\n{result.detail}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{len(rendered)} nodes rendered to {args.out} in {elapsed:.2f} s; {failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
