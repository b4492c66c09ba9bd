"""Check rendered files with the real daemons (`haproxy -c`, `keepalived -t`) when installed.

The daemons that judge can be this machine's own (Debian 12: HAProxy 2.6, keepalived 2.2) or those
of the Debian 13 root (HAProxy 3.0, keepalived 2.3: the series Alpine 3.21 shipped; the default Alpine
3.24's own versions could not be read here), run by chroot. Each result's tool label names the version that judged it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..model.proxies import name_rejected_keys
from . import daemons13
from .render import RenderedFile


@dataclass(frozen=True)
class CheckResult:
    tool: str
    # "ok": the checker ran and accepted the file; "failed": it rejected it; "skipped": it could
    # not run here (not installed, no root), so nothing judged the file: never counted as a pass.
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def __str__(self) -> str:
        return f"{self.tool}: {self.status}" + (f" ({self.detail})" if self.detail and self.status != "failed" else "")


@dataclass(frozen=True)
class Daemons:
    """Which haproxy and keepalived judge a config: this machine's (root None) or a chroot root's."""

    name: str
    root: Path | None = None

    def locate(self, program: str) -> tuple[str | None, str]:
        """The program's path as it sees itself, or None and why it cannot run here."""
        if self.root is None:
            path = shutil.which(program)
            return path, "" if path else f"{program} not installed"
        if os.geteuid() != 0:
            return None, f"{self.name}: chroot needs root"
        if not daemons13.is_ready(self.root):
            return None, f"{self.name}: no root at {self.root} (python -m components.files.daemons13 builds it)"
        if not (self.root / "usr/sbin" / program).is_file():
            return None, f"{self.name}: {program} not installed in {self.root}"
        return f"/usr/sbin/{program}", ""

    def command(self, binary: str, *args: str) -> list[str]:
        return [binary, *args] if self.root is None else ["chroot", str(self.root), binary, *args]

    @contextmanager
    def scratch(self) -> Iterator[tuple[Path, Path]]:
        """A private temporary folder: (its path here, its path as the daemon sees it)."""
        base = None if self.root is None else self.root / "tmp"
        with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-", dir=base) as tmp:
            here = Path(tmp)
            yield here, here if self.root is None else Path("/", here.relative_to(self.root))

    def label(self, program: str, binary: str, flag: str) -> str:
        """`haproxy 3.0.11 -c`: which version judged, so a result cannot be mistaken for another's."""
        version = _version(tuple(self.command(binary, "-v")))
        return f"{program} {version} {flag}" if version else f"{program} {flag}"


HOST = Daemons("host")


def debian13(root: Path | None = None) -> Daemons:
    """Debian 13's daemons, from the cached root (daemons13.ensure_root builds it)."""
    return Daemons("debian13", root or daemons13.root_path())


@cache
def _version(argv: tuple[str, ...]) -> str:
    """`HAProxy version 3.0.11-1+deb13u4 ...` / `Keepalived v2.3.3 (...)` -> the upstream version."""
    code, out = _run(list(argv))
    match = re.search(r"\bv?(\d+\.\d+(?:\.\d+)?)", out) if code == 0 else None
    return match.group(1) if match else ""


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_haproxy(config_text: str, daemons: Daemons = HOST, files: tuple[RenderedFile, ...] = (),
                  keys: Mapping[int, str] | None = None) -> CheckResult:
    """`haproxy -dW -c`: zero-warning mode, any warning fails the check. Files the config
    names (certificates, crt-lists, CAs, ticket keys) are put in a private folder and the config
    and those files pointed there. `keys` (line -> config key of a raw line) names what HAProxy rejects."""
    binary, why = daemons.locate("haproxy")
    if not binary:
        return CheckResult("haproxy -c", "skipped", why)
    tool = daemons.label("haproxy", binary, "-c")
    with daemons.scratch() as (here, seen):
        moved = {f.path: str(seen / f.name) for f in files if f.path in config_text}
        named = [f for f in files if f.path in moved]

        def pointed(text: str) -> str:
            for path, there in moved.items():
                text = text.replace(path, there)
            return text

        for f in named:
            Path(here, f.name).write_text(pointed(f.text))
            Path(here, f.name).chmod(0o600)
        Path(here, "haproxy.cfg").write_text(pointed(config_text))
        code, out = _run(daemons.command(binary, "-dW", "-c", "-f", str(seen / "haproxy.cfg")))
    if code != 0 or "[WARNING]" in out or "[ALERT]" in out:
        return CheckResult(tool, "failed", name_rejected_keys(out, keys or {}) or f"exit status {code}")
    return CheckResult(tool, "ok")


def check_keepalived(
    conf: RenderedFile, scripts: tuple[RenderedFile, ...], interface: str | tuple[str, ...], daemons: Daemons = HOST
) -> CheckResult:
    """`keepalived -t` on the config with its scripts in place.

    keepalived checks that scripts exist in a directory only root can write, and that the
    VRRP interface exists. So the scripts are copied to a private temporary directory (paths
    rewritten to it) and, as root, the check runs in a scratch network namespace holding an
    interface of the configured name; without root it needs that interface on this machine.
    A chroot's keepalived runs in the same namespace, its files in a folder inside the root.
    """
    binary, why = daemons.locate("keepalived")
    if not binary:
        return CheckResult("keepalived -t", "skipped", why)
    interfaces = (interface,) if isinstance(interface, str) else interface
    root = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    if not root and not all(Path("/sys/class/net", name).exists() for name in interfaces):
        return CheckResult("keepalived -t", "skipped", f"needs root or interfaces named {' '.join(interfaces)}")
    tool = daemons.label("keepalived", binary, "-t")
    with daemons.scratch() as (here, seen):
        text = conf.text
        for script in scripts:
            copy = Path(here, script.name)
            copy.write_text(script.text)
            copy.chmod(0o755)
            text = text.replace(f'"{script.path}"', f'"{seen / script.name}"')
        # Tracked files too: keepalived creates them (init_file), never on this machine's /run.
        text = re.sub(r'(?m)^(\s*file ")/[^"]*/([^"/]+)"', lambda m: f'{m.group(1)}{seen / m.group(2)}"', text)
        Path(here, "keepalived.conf").write_text(text)
        argv = daemons.command(binary, "-t", "-f", str(seen / "keepalived.conf"))
        if root:
            made = " && ".join(f'ip link add "{name}" type veth peer name hahapeer{i} && ip link set "{name}" up'
                               for i, name in enumerate(interfaces))
            argv = ["unshare", "--net", "sh", "-c", f'{made} && exec "$@"', "_", *argv]
        code, out = _run(argv)
    if code != 0 or "WARNING" in out:
        return CheckResult(tool, "failed", out or f"exit status {code}")
    return CheckResult(tool, "ok")


def check_shell(script: RenderedFile) -> CheckResult:
    """`busybox sh -n` (Alpine's shell) and shellcheck for POSIX sh: skipped unless both can run."""
    tool = "busybox sh -n + shellcheck"
    checks = {"busybox": ["busybox", "sh", "-n"], "shellcheck": ["shellcheck", "--shell=sh", "--severity=style"]}
    missing = [program for program in checks if not shutil.which(program)]
    problems = []
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        path = Path(tmp, script.name)
        path.write_text(script.text)
        for program, argv in checks.items():
            if program not in missing:
                code, out = _run([*argv, str(path)])
                if code:
                    problems.append(out)
    if problems:
        return CheckResult(tool, "failed", "\n".join(problems))
    if missing:
        return CheckResult(tool, "skipped", f"{' and '.join(missing)} not installed")
    return CheckResult(tool, "ok")


def _run_on(tool: str, program: str, text: str, argv: list[str]) -> tuple[CheckResult | None, int, str]:
    """Run `program` (from PATH) with `argv` on `text` saved as {file} in a private folder;
    `{file}` and `{dir}` in argv are filled in. A skipped result when the program is missing."""
    binary = shutil.which(program)
    if not binary:
        return CheckResult(tool, "skipped", f"{program} not installed"), 0, ""
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        path = Path(tmp, "checked.conf")
        path.write_text(text)
        code, out = _run([binary, *(a.format(file=path, dir=tmp) for a in argv)])
    return None, code, out


def check_rsyslog(config_text: str) -> CheckResult:
    """`rsyslogd -N1`: a full config check that starts nothing."""
    skipped, code, out = _run_on("rsyslogd -N1", "rsyslogd", config_text, ["-N1", "-f", "{file}"])
    return skipped or (CheckResult("rsyslogd -N1", "failed", out) if code else CheckResult("rsyslogd -N1", "ok"))


def check_logrotate(config_text: str) -> CheckResult:
    """`logrotate -d` (a dry run); it exits 0 after ignoring an unknown option, so any `error:`
    line fails the check, as the node's apply step does."""
    skipped, code, out = _run_on("logrotate -d", "logrotate", config_text, ["-d", "-s", "{dir}/state", "{file}"])
    if skipped:
        return skipped
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if code or errors:
        return CheckResult("logrotate -d", "failed", "\n".join(errors) or out)
    return CheckResult("logrotate -d", "ok")


def check_python(script: RenderedFile) -> CheckResult:
    """The helper parses as Python (the node runs it with its python3)."""
    try:
        ast.parse(script.text, script.name)
    except SyntaxError as exc:
        return CheckResult("python3 parse", "failed", str(exc))
    return CheckResult("python3 parse", "ok")


def check_openrc(script: RenderedFile) -> CheckResult:
    """`sh -n` on an OpenRC service file (openrc-run sources it with /bin/sh)."""
    skipped, code, out = _run_on("sh -n", "sh", script.text, ["-n", "{file}"])
    return skipped or (CheckResult("sh -n", "failed", out) if code else CheckResult("sh -n", "ok"))


def check_nftables(ruleset: RenderedFile) -> CheckResult:
    """`nft -c -f`: nft parses the ruleset and the kernel checks the transaction without
    committing it. As root it runs in a scratch network namespace, so this machine's own
    ruleset is never involved; without root nothing judges it."""
    binary = shutil.which("nft")
    if not binary:
        return CheckResult("nft -c", "skipped", "nft not installed (Debian's nftables package)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return CheckResult("nft -c", "skipped", "nft -c needs root (a scratch network namespace)")
    tool = f"nft {_version((binary, '--version'))} -c".replace("nft  -c", "nft -c")
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        path = Path(tmp, ruleset.name)
        path.write_text(ruleset.text)
        code, out = _run(["unshare", "--net", binary, "-c", "-f", str(path)])
    return CheckResult(tool, "failed", out or f"exit status {code}") if code else CheckResult(tool, "ok")


def check_raw_lines(cluster, daemons: Daemons = HOST) -> str | None:
    """The raw HAProxy lines (`extra`, `extraSections`) judged where the program runs, when HAProxy
    is installed there: `haproxy -c` on the first node's haproxy.cfg. A raw line it rejects is one
    ConfigError naming that line's key, at `pulumi preview`, before anything is declared, when
    this HAProxy can speak for the nodes': the lab's own (they are the same), or 3.0 and later for
    the VMs (Alpine's series). An older one here (Debian 12's 2.6) may refuse what the nodes
    take: then the same words come back as a warning to show, and the nodes' apply steps judge.
    Without a local HAProxy nothing is judged here."""
    from ..config.errors import ConfigError
    from ..model import proxies
    from .render import haproxy_line_keys, placeholder_ticket_keys, render_node

    if not proxies.raw_lines(cluster.spec.haproxy) or not daemons.locate("haproxy")[0]:
        return None
    files = render_node(cluster, cluster.nodes[0])
    if cluster.uses_tls:
        files += (placeholder_ticket_keys(cluster),)
    config = next(f for f in files if f.name == "haproxy.cfg")
    result = check_haproxy(config.text, daemons, files, haproxy_line_keys(cluster))
    named, _, said = result.detail.partition(": HAProxy rejects this line: ")
    if result.status != "failed" or not said:
        return None
    first, *others = named.split(", ")
    also = f" (and {', '.join(others)})" if others else ""
    # HAProxy's own words, on one line (an error is shown as its first line): what it alerts.
    words = [re.sub(r"^\[(ALERT|WARNING)\]\s*\(\d+\) : ", "", line).strip() for line in said.splitlines()
             if line.startswith(("[ALERT]", "[WARNING]")) and "Error(s) found" not in line
             and "Fatal errors" not in line]
    reason = f"HAProxy rejects this raw line{also} ({result.tool} here): {' '.join(words)[:600] or said.strip()[:600]}"
    version = re.search(r"haproxy (\d+)\.", result.tool)
    if cluster.spec.platform == "lab" or (version is not None and int(version.group(1)) >= 3):
        raise ConfigError(first, reason)
    return f"{first}: {reason}; the nodes run a newer HAProxy, which judges it in their apply step"
