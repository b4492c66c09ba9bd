"""`python -m components render STACK --out DIR`: render every node's files offline and check
them with the real daemons. Exit 0 when every check ran and passed (or none was asked for:
`--no-validate`), 1 when a daemon rejects a file, 2 when the stack config is invalid (then
nothing is written), 3 when `--also-debian13` was asked for but the Debian 13 root could not be
built, 4 when no check failed but some could not run here (a checker not installed, no root):
those files were written but nothing judged them, which is not a pass.

`python -m components schema`: the JSON Schema of a stack file and docs/configuration.md,
both generated from the config models (components/config/jsonschema.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from .config.errors import ConfigError
from .config.jsonschema import schema_text
from .config.reference import SCHEMA_FILE, configuration_page
from .config.vridcheck import check_vrids, other_stacks
from .files.daemons13 import DEFAULT_ROOT, ROOT_ENV, RootBuildError, ensure_root
from .files.render import (
    RenderedFile,
    haproxy_line_keys,
    placeholder_ticket_keys,
    render_cluster,
    render_scripts,
)
from .files.validate import (
    HOST,
    CheckResult,
    Daemons,
    check_haproxy,
    check_keepalived,
    check_logrotate,
    check_nftables,
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
    "(the series Alpine 3.21 shipped), chrooted into a cached Debian 13 root at "
    f"${ROOT_ENV} (default {DEFAULT_ROOT}); the root is built first if missing (debootstrap, "
    "about 30 s and 270 MB, needs root). Exit 3 if it cannot be built."
)


WITH_HAPROXY_CFG = "checked with haproxy.cfg (haproxy -c loads it)"


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
    schema = sub.add_parser("schema", help="write the stack file's JSON Schema and the configuration page")
    schema.add_argument("--docs", type=Path, default=PROJECT_DIR / "docs", help="the folder they go to")
    schema.add_argument("--project", type=Path, default=PROJECT_DIR, help="the shipped stacks (the examples)")
    schema.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    return parser.parse_args(argv)


def check_file(f: RenderedFile, node_files: tuple[RenderedFile, ...], cluster: Cluster,
               daemon_sets: tuple[Daemons, ...]) -> list[CheckResult]:
    """Daemon configs are judged by every daemon set asked for; scripts by the shell checkers; the
    files haproxy.cfg names by `haproxy -c` with it. A file nothing checks is a skipped check."""
    scripts = tuple(n for n in node_files if n.name.endswith(".sh"))
    if f.name == "haproxy.cfg":
        keys = haproxy_line_keys(cluster)  # a raw line HAProxy rejects is named by its key
        return [check_haproxy(f.text, daemons, node_files, keys) for daemons in daemon_sets]
    if f.name == "keepalived.conf":
        return [check_keepalived(f, scripts, cluster.interfaces, daemons) for daemons in daemon_sets]
    if f.name == "rsyslog.conf":
        return [check_rsyslog(f.text)]
    if f.name == "logrotate-haproxy":
        return [check_logrotate(f.text)]
    if f.name == "haproxy-watch":
        return [check_python(f)]
    if f.name == "nftables.nft":
        return [check_nftables(f)]
    if f.name.endswith(".initd"):
        return [check_openrc(f)]
    if f.name.endswith(".sh"):
        return [check_shell(f)]
    if any(f.path in n.text for n in node_files if n.name == "haproxy.cfg"):
        return []  # a certificate, CA, crt-list or ticket keys: `haproxy -c` loads it with haproxy.cfg
    return [CheckResult("no checker", "skipped", f"nothing checks {f.name}")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return write_schema(args) if args.command == "schema" else render(args)


def write_schema(args: argparse.Namespace) -> int:
    """docs/stack-config.schema.json and docs/configuration.md, generated; `--check`: compared."""
    generated = {SCHEMA_FILE: schema_text(), "configuration.md": configuration_page(args.project)}
    stale = [name for name, text in generated.items()
             if not (args.docs / name).is_file() or (args.docs / name).read_text() != text]
    if args.check:
        for name in stale:
            print(f"error: {args.docs / name} is not what the models generate; run python -m components schema",
                  file=sys.stderr)
        return 1 if stale else 0
    args.docs.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.docs / name).write_text(generated[name])
    print(f"{args.docs}: {', '.join(stale) or 'nothing'} written ({len(generated) - len(stale)} up to date)")
    return 0


def render(args: argparse.Namespace) -> int:
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

    results: list[CheckResult] = []
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
            checked = check_file(f, files, cluster, daemon_sets) if daemon_sets else []
            shown = '; '.join(map(str, checked)) or (WITH_HAPROXY_CFG if daemon_sets else "not validated")
            print(f"{node_name:<20} {f.name:<18} {target}  {shown}")
            for result in checked:
                if result.failed:
                    print(f"{result.tool}:\n{result.detail}", file=sys.stderr)
            results += checked
    elapsed = time.perf_counter() - started
    print(f"{len(rendered)} nodes rendered to {args.out} in {elapsed:.2f} s; {summary(results, daemon_sets)}")
    return exit_status(results)


def summary(results: list[CheckResult], daemon_sets: tuple[Daemons, ...]) -> str:
    """`45 checks passed, 0 failed, 3 skipped (haproxy not installed: 3)`."""
    if not daemon_sets:
        return "not validated (--no-validate)"
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    return f"{len(results) - failed - skipped} checks passed, {failed} failed, {skipped} skipped{_why_skipped(results)}"


def _why_skipped(results: list[CheckResult]) -> str:
    reasons = Counter(r.detail or r.tool for r in results if r.skipped)
    return " (" + "; ".join(f"{why}: {n}" for why, n in sorted(reasons.items())) + ")" if reasons else ""


def exit_status(results: list[CheckResult]) -> int:
    """1 when a check failed; 4 when none failed but some could not run; else 0."""
    if any(r.failed for r in results):
        return 1
    skipped = sum(r.skipped for r in results)
    if skipped:
        print(f"error: {skipped} checks skipped{_why_skipped(results)}: their files were written but not "
              "judged; install what the checks need (make setup), or pass --no-validate to render "
              "without checks", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
