"""Check rendered files with the real daemons (`haproxy -c`, `keepalived -t`) when installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .render import RenderedFile


@dataclass(frozen=True)
class CheckResult:
    tool: str
    status: str  # "ok" | "failed" | "skipped"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def __str__(self) -> str:
        return f"{self.tool}: {self.status}" + (f" ({self.detail})" if self.detail and self.status != "failed" else "")


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_haproxy(config_text: str) -> CheckResult:
    """`haproxy -dW -c`: zero-warning mode, any warning fails the check."""
    binary = shutil.which("haproxy")
    if not binary:
        return CheckResult("haproxy -c", "skipped", "haproxy not installed")
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        path = Path(tmp, "haproxy.cfg")
        path.write_text(config_text)
        code, out = _run([binary, "-dW", "-c", "-f", str(path)])
    if code != 0 or "[WARNING]" in out or "[ALERT]" in out:
        return CheckResult("haproxy -c", "failed", out)
    return CheckResult("haproxy -c", "ok")


def check_keepalived(conf: RenderedFile, scripts: tuple[RenderedFile, ...], interface: str) -> CheckResult:
    """`keepalived -t` on the config with its scripts in place.

    keepalived checks that scripts exist in a directory only root can write, and that the
    VRRP interface exists. So the scripts are copied to a private temporary directory (paths
    rewritten to it) and, as root, the check runs in a scratch network namespace holding an
    interface of the configured name; without root it needs that interface on this machine.
    """
    binary = shutil.which("keepalived")
    if not binary:
        return CheckResult("keepalived -t", "skipped", "keepalived not installed")
    root = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    if not root and not Path("/sys/class/net", interface).exists():
        return CheckResult("keepalived -t", "skipped", f"needs root or an interface named {interface}")
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        text = conf.text
        for script in scripts:
            copy = Path(tmp, script.name)
            copy.write_text(script.text)
            copy.chmod(0o755)
            text = text.replace(f'"{script.path}"', f'"{copy}"')
        path = Path(tmp, "keepalived.conf")
        path.write_text(text)
        if root:
            argv = [
                "unshare", "--net", "sh", "-c",
                'ip link add "$1" type veth peer name hahapeer0 && ip link set "$1" up '
                '&& exec "$2" -t -f "$3"',
                "_", interface, binary, str(path),
            ]
        else:
            argv = [binary, "-t", "-f", str(path)]
        code, out = _run(argv)
    if code != 0 or "WARNING" in out:
        return CheckResult("keepalived -t", "failed", out or f"exit status {code}")
    return CheckResult("keepalived -t", "ok")


def check_shell(script: RenderedFile) -> CheckResult:
    """`busybox sh -n` (Alpine's shell) and shellcheck for POSIX sh, when installed."""
    problems = []
    ran = []
    with tempfile.TemporaryDirectory(prefix="haproxy-ha-check-") as tmp:
        path = Path(tmp, script.name)
        path.write_text(script.text)
        if shutil.which("busybox"):
            ran.append("busybox sh -n")
            code, out = _run(["busybox", "sh", "-n", str(path)])
            if code:
                problems.append(out)
        if shutil.which("shellcheck"):
            ran.append("shellcheck")
            code, out = _run(["shellcheck", "--shell=sh", "--severity=style", str(path)])
            if code:
                problems.append(out)
    tool = " + ".join(ran) or "sh -n"
    if not ran:
        return CheckResult(tool, "skipped", "busybox and shellcheck not installed")
    return CheckResult(tool, "failed", "\n".join(problems)) if problems else CheckResult(tool, "ok")
