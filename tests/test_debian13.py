"""Rendered files are accepted by Debian 13's HAProxy 3.0 and keepalived 2.3, the series Alpine
3.21 shipped (this machine's Debian 12 has 2.6 and 2.2), chrooted into the cached Debian 13 root.

The root is built on first use (about 30-40 s); tests that need it need root and skip otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.files import daemons13
from components.files.render import RenderedFile, placeholder_ticket_keys, render_cluster
from components.files.validate import Daemons, check_haproxy, check_keepalived, debian13
from components.model.model import build_cluster
from components.stackfile import read_stack
from tests.conftest import TRACKED_STACKS, VALIDATED, requires_root, tls_secrets, tracked_project

ROOT = Path(__file__).resolve().parent.parent
STATS_PW = "correct horse battery"
VRRP_PW = "k33pal1v"
HAPROXY_SERIES = "3.0."
KEEPALIVED_SERIES = "2.3."


@pytest.fixture(scope="module")
def daemons() -> Daemons:
    """Debian 13's daemons; the root is built here if missing, so a fresh clone's `make test` works."""
    root = daemons13.root_path()
    if not daemons13.is_ready(root) and not shutil.which("debootstrap"):
        pytest.skip("debootstrap is not installed (make setup installs it)")
    return debian13(daemons13.ensure_root(root))


def rendered_stack(stack: str, vrrp_password: str | None) -> tuple[object, dict[str, list[RenderedFile]]]:
    config = read_stack(stack, tracked_project(), environ={}).config
    cluster = build_cluster(stack, config, tls_secrets(config, STATS_PW, vrrp_password))
    return cluster, render_cluster(cluster)


@requires_root
def test_the_root_runs_debian13s_haproxy_30_and_keepalived_23(daemons):
    """Asserted on what the binaries print, so the other tests cannot pass against the wrong daemons."""
    assert daemons.root is not None
    haproxy = subprocess.run(["chroot", str(daemons.root), "/usr/sbin/haproxy", "-v"], capture_output=True, text=True)
    keepalived = subprocess.run(["chroot", str(daemons.root), "/usr/sbin/keepalived", "-v"],
                                capture_output=True, text=True)
    assert haproxy.stdout.startswith(f"HAProxy version {HAPROXY_SERIES}"), haproxy.stdout
    assert (keepalived.stdout + keepalived.stderr).startswith(f"Keepalived v{KEEPALIVED_SERIES}"), keepalived.stderr
    assert daemons.label("haproxy", "/usr/sbin/haproxy", "-c").startswith(f"haproxy {HAPROXY_SERIES}")
    assert daemons.label("keepalived", "/usr/sbin/keepalived", "-t").startswith(f"keepalived {KEEPALIVED_SERIES}")


def _with_ipv6(stack: str) -> bool:
    return "2001:db8" in (tracked_project() / TRACKED_STACKS[stack]).read_text()


# Each shipped stack as it is, and with a vrrpPassword where it has no IPv6 VIP: VRRPv2 (PASS
# auth) has no IPv6, and the model refuses that pair (tests/test_vips.py).
CASES = [(stack, None) for stack in sorted(TRACKED_STACKS)] + [
    (stack, VRRP_PW) for stack in sorted(TRACKED_STACKS) if not _with_ipv6(stack)]


@requires_root
@pytest.mark.parametrize("stack, vrrp_password", CASES)
def test_every_shipped_stack_is_accepted_by_debian13s_daemons(daemons, stack, vrrp_password):
    cluster, rendered = rendered_stack(stack, vrrp_password)
    for node, files in rendered.items():
        by_name = {f.name: f for f in files}
        scripts = tuple(f for f in files if f.name.endswith(".sh"))
        extra = (placeholder_ticket_keys(cluster),) if cluster.uses_tls else ()
        result = check_haproxy(by_name["haproxy.cfg"].text, daemons, (*files, *extra))
        assert result.status == "ok" and result.tool.startswith(f"haproxy {HAPROXY_SERIES}"), f"{node}: {result}"
        result = check_keepalived(by_name["keepalived.conf"], scripts, cluster.interfaces, daemons)
        assert result.status == "ok" and result.tool.startswith(f"keepalived {KEEPALIVED_SERIES}"), f"{node}: {result}"
        VALIDATED["haproxy.cfg (3.0)"] += 1
        VALIDATED["keepalived.conf (2.3)"] += 1


@requires_root
def test_debian13s_daemons_reject_broken_configs(daemons):
    """A check that accepts everything would pass the test above; these must fail."""
    cluster, rendered = rendered_stack("prod", None)
    files = {f.name: f for f in rendered["k3s-lb-01"]}
    haproxy, keepalived = files["haproxy.cfg"].text, files["keepalived.conf"]
    scripts = tuple(f for f in rendered["k3s-lb-01"] if f.name.endswith(".sh"))
    interface = cluster.spec.cluster.interface

    node_files = tuple(rendered["k3s-lb-01"])  # the CA files the config names
    unknown_keyword = check_haproxy(haproxy + "\nfrontend broken\n    no_such_keyword on\n", daemons, node_files)
    assert unknown_keyword.status == "failed" and "no_such_keyword" in unknown_keyword.detail
    # Zero-warning rule: only a warning, still refused.
    warning = "\nfrontend warns\n    mode tcp\n    bind 127.0.0.1:9999\n    option httplog\n    default_backend none\n"
    only_warns = check_haproxy(haproxy + warning + "backend none\n    mode tcp\n", daemons, node_files)
    assert only_warns.status == "failed" and "[WARNING]" in only_warns.detail, only_warns.detail

    bad_vrid = RenderedFile(keepalived.name, keepalived.path, keepalived.mode,
                            keepalived.text.replace("virtual_router_id 51", "virtual_router_id 300"), keepalived.secret)
    result = check_keepalived(bad_vrid, scripts, interface, daemons)
    assert result.status == "failed" and "300" in result.detail
    # The scripts are checked where the root's keepalived looks: without them it disables the check.
    result = check_keepalived(keepalived, (), interface, daemons)
    assert result.status == "failed" and "chk_haproxy" in result.detail, result.detail
    assert result.tool.startswith(f"keepalived {KEEPALIVED_SERIES}")


@requires_root
def test_render_cli_also_debian13_checks_with_both_daemon_sets(daemons, tmp_path):
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "components", "render", "prod", "--out", str(tmp_path / "out"),
         "--project", str(tracked_project()), "--also-debian13"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, daemons13.ROOT_ENV: str(daemons.root)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines()
             if line.split()[1:2] in (["haproxy.cfg"], ["keepalived.conf"])]  # the file-name column
    assert len(lines) == 6
    for line in lines:
        assert line.count(": ok") == 2, line
        assert f"haproxy {HAPROXY_SERIES}" in line or f"keepalived {KEEPALIVED_SERIES}" in line, line


def test_an_unfinished_root_is_never_used(tmp_path):
    """Only the stamp, written last before the rename, makes a root usable."""
    half_built = tmp_path / "debian13-root"
    (half_built / "usr/sbin").mkdir(parents=True)
    (half_built / "usr/sbin/haproxy").write_text("#!/bin/sh\nexit 0\n")
    assert not daemons13.is_ready(half_built)
    assert check_haproxy("global\n", debian13(half_built)).status == "skipped"


def test_the_mirror_is_the_one_apt_uses_for_the_hosts_own_suite(tmp_path, monkeypatch):
    monkeypatch.delenv(daemons13.MIRROR_ENV, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# deb http://old.example/debian bookworm main\n")
    (tmp_path / "sources.list.d/security.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://archive.example/debian\nSuites: bookworm\n  bookworm-updates\n"
        "Components: main\n"
    )
    (tmp_path / "sources.list.d/node.list").write_text("deb [signed-by=/k.gpg] https://node.example nodistro main\n")
    assert daemons13.debian_mirror(tmp_path, "bookworm") == "http://archive.example/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://first.example/debian bookworm main\n")
    assert daemons13.debian_mirror(tmp_path, "bookworm") == "http://first.example/debian"
    with pytest.raises(daemons13.RootBuildError):
        daemons13.debian_mirror(tmp_path, "trixie")
