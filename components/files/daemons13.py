"""A cached minimal Debian 13 root holding HAProxy 3.0 and keepalived 2.3, a newer series than this machine's.

Production ran Alpine 3.21 (HAProxy 3.0, keepalived 2.3) and now runs Alpine 3.24 by default (its versions
could not be read here: no aports tree of that branch was available) while this machine and the lab run Debian 12's
2.6 and 2.2, so a config could pass here and be refused there (new keywords, removed ones, stricter
checks). Debian 13 ships 3.21's upstream series, so its binaries, run in a chroot, judge the rendered
files as production would. The root is made once with `debootstrap --variant=minbase` from the Debian
archive this machine's apt already uses, built in a temporary sibling folder and renamed into place
only when complete (with a stamp file), so a half-built root is never used.

`python -m components.files.daemons13` builds it (if missing) and prints where it is and what it holds.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT_ENV = "HAPROXY_HA_DEBIAN13_ROOT"
MIRROR_ENV = "HAPROXY_HA_DEBIAN13_MIRROR"  # only if this machine's apt sources name no Debian archive
DEFAULT_ROOT = Path("/var/cache/haproxy-ha/debian13-root")
SUITE = "trixie"
DAEMONS = ("haproxy", "keepalived")
# ca-certificates: the trust store `ca-file @system-ca` loads (backends' tls.ca: system).
PACKAGES = (*DAEMONS, "ca-certificates")
STAMP = ".haproxy-ha-root"  # written last, inside the root, before the rename
BUILD_TIMEOUT = 1800


class RootBuildError(RuntimeError):
    """The Debian 13 root could not be built (no root, no debootstrap, archive unreachable...)."""


def root_path() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def is_ready(root: Path) -> bool:
    """Only a root that finished building carries the stamp; anything else is never used. A root
    built with fewer packages than PACKAGES is outdated (ensure_root builds it again)."""
    return (root / STAMP).is_file() and _stamped_packages(root) == set(PACKAGES)


def _stamped_packages(root: Path) -> set[str]:
    for line in (root / STAMP).read_text().splitlines():
        if line.startswith("packages "):
            return set(line.split()[1:])
    return set(DAEMONS)  # stamps written before the line existed


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    raise RootBuildError(f"no VERSION_CODENAME in {os_release}")


def _list_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of the `deb` lines of a one-line-style sources file."""
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of the enabled `deb` stanzas of a deb822 `.sources` file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def debian_mirror(apt_dir: Path = Path("/etc/apt"), codename: str | None = None) -> str:
    """The Debian archive apt on this machine uses: the first source carrying the host's own suite.

    Its `-security` and `-updates` siblings and third-party repositories carry other suite names,
    so they never match.
    """
    codename = codename or host_codename()
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*"))
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        entries = _deb822_entries if path.suffix == ".sources" else _list_entries
        for uri, suites in entries(path.read_text()):
            if codename in suites and uri.startswith(("http://", "https://")):
                return uri
    raise RootBuildError(f"no http(s) source for suite {codename} in {apt_dir}; set {MIRROR_ENV}")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        return [m.split()[1] for m in mounts if (m.split()[1] + "/").startswith(prefix)]


def _remove_partial(path: Path) -> None:
    """Delete an unfinished build, but never through a mount (debootstrap's run in its own namespace)."""
    if mounted := _mounts_under(path):
        raise RootBuildError(f"refusing to delete {path}: mounted under it: {', '.join(mounted)}")
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    """One builder at a time (parallel test runs, two renders); the others wait, then find it ready."""
    with open(root.parent / f"{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _debootstrap(target: Path, mirror: str) -> None:
    """debootstrap mounts /proc and /sys in the target; a private mount namespace keeps that (and
    any mount a failed run leaves behind) off the host."""
    argv = [
        "unshare", "--mount", "--propagation", "private",
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), mirror,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        log = target / "debootstrap/debootstrap.log"
        tail = log.read_text().splitlines()[-15:] if log.is_file() else []
        raise RootBuildError(
            f"debootstrap failed (exit {proc.returncode}):\n" + "\n".join([*tail, proc.stdout[-2000:], proc.stderr])
        )


def _versions(root: Path) -> str:
    out = []
    for program in DAEMONS:
        argv = ["chroot", str(root), f"/usr/sbin/{program}", "-v"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        out.append((proc.stdout + proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else f"{program}: ?")
    return "\n".join(out)


def build_root(root: Path, mirror: str) -> None:
    """Build in `<root>.partial-*` next to the target, drop the package cache, stamp, rename."""
    partial = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=root.parent))
    try:
        _debootstrap(partial, mirror)
        for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()  # 50 MB nobody reads again
        partial.chmod(0o755)
        stamp = (f"suite {SUITE}\nmirror {mirror}\npackages {' '.join(PACKAGES)}\n"
                 f"built {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n{_versions(partial)}\n")
        (partial / STAMP).write_text(stamp)
        os.rename(partial, root)
    finally:
        if partial.exists():
            _remove_partial(partial)


def ensure_root(root: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The ready root, built first if missing. Raises RootBuildError when it cannot be built."""
    root = root or root_path()
    if is_ready(root):
        return root
    if os.geteuid() != 0:
        raise RootBuildError(f"building the Debian 13 root at {root} needs root (debootstrap, chroot)")
    if not shutil.which("debootstrap"):
        raise RootBuildError("debootstrap is not installed (make setup installs it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        if is_ready(root):
            return root
        if (root / STAMP).is_file():  # ours, built with fewer packages: set aside, then removed
            outdated = root.parent / f"{root.name}.partial-outdated"
            os.rename(root, outdated)
            _remove_partial(outdated)
        if root.exists():
            raise RootBuildError(f"{root} exists but has no {STAMP} stamp; remove it to rebuild")
        for stale in root.parent.glob(f"{root.name}.partial-*"):
            _remove_partial(stale)  # an interrupted build of ours
        mirror = debian_mirror()
        (log or _stderr)(f"building the Debian 13 root at {root} from {mirror} (debootstrap, about 40 s)...")
        started = time.monotonic()
        build_root(root, mirror)
        (log or _stderr)(f"Debian 13 root ready in {time.monotonic() - started:.0f} s")
    return root


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    """Build the root if missing; without root privileges skip, as the tests that need it do."""
    root = root_path()
    if not is_ready(root) and os.geteuid() != 0:
        print(f"not root: the Debian 13 root ({root}) is not built; its tests will skip")
        return 0
    try:
        ensure_root(root)
    except RootBuildError as exc:
        _stderr(f"error: {exc}")
        return 1
    print(f"{root}:\n{(root / STAMP).read_text().rstrip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
