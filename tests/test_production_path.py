"""The production audit's findings that can be checked without a node: HAProxy's log path, the
resolver block, cloud-init, and one set of files and steps for the VMs and the lab."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.config.errors import ConfigError
from components.files.render import PATHS, render_node, render_scripts
from components.model.model import build_cluster
from tests.conftest import stack_config, tls_secrets
from tests.mocks import Declaration
from tests.program_support import run

VM = "proxmoxve:index/vmLegacy:VmLegacy"

STATS_PW = "correct horse battery"
LAB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB lab@test"


def files(stack: str, cfg: dict | None = None) -> dict[str, str]:
    cluster = build_cluster(stack, cfg or stack_config(stack), tls_secrets(cfg or stack_config(stack), STATS_PW))
    node = cluster.nodes[0]
    out = {f.name: f.text for f in render_node(cluster, node)}
    out.update(render_scripts(cluster, node))
    return out


def library() -> str:
    """The shell library every script carries (cut from a rendered script)."""
    text = files("prod")["bootstrap.sh"]
    start = text.index("# --- haproxy-ha shell library")
    return text[start:text.index("# --- end of library ---")]


def run_sh(script: str, path: str = "/usr/sbin:/usr/bin:/sbin:/bin", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", library() + script], capture_output=True, text=True, timeout=30,
                          env={"PATH": path, **env})


# --- one set of files for both platforms ------------------------------------------------------

# How a node is reached and which machine it is: the only inputs of a node's steps that may
# differ between a lab node and a VM.
REACH = frozenset({"connection", "triggers", "host", "port", "hostKey", "hostKeyUrn", "privateKey", "bastion",
                   "dialAttempts"})


def node_steps(declared: Declaration) -> dict[str, dict]:
    """Every resource the program declares on a node (its remote steps, host key and NodeState),
    by name, with the inputs that say what the node is sent, runs and is checked against."""
    nodes = {r.urn for r in declared.by_type("haproxy-ha:index:HaNode")}
    return {r.name: {k: v for k, v in r.inputs.items() if k not in REACH}
            for r in declared.resources if r.parent in nodes}


@pytest.mark.parametrize("vrrp_password", [None, "k33pal1v"])
def test_the_lab_runs_the_files_and_steps_production_runs(vrrp_password):
    """The program for one config on both platforms: a lab node is sent what a VM is sent, byte
    for byte (every command, every file, the scripts and the probe of its NodeState)."""
    lab = stack_config("lab")
    lab["haproxy-ha:sshPublicKey"] = LAB_KEY
    as_vm = copy.deepcopy(lab)
    as_vm["haproxy-ha:platform"] = "proxmox"
    as_vm["proxmoxve:endpoint"] = "https://pve.example.lan:8006/"
    on_lab = run(lab, stack="lab", vrrp_password=vrrp_password)
    on_vm = run(as_vm, stack="lab", vrrp_password=vrrp_password)
    # Two platforms indeed: namespaces made on this machine, VMs made by Proxmox.
    assert on_lab.by_type("haproxy-ha:index:LabNodes") and not on_lab.by_type(VM)
    assert on_vm.by_type(VM) and not on_vm.by_type("haproxy-ha:index:LabNodes")
    lab_steps, vm_steps = node_steps(on_lab), node_steps(on_vm)
    assert sorted(lab_steps) == sorted(vm_steps)
    for node in ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03"):
        for step in ("bootstrap", "install", "file-haproxy-cfg", "file-keepalived-conf", "apply-haproxy",
                     "apply-keepalived", "state"):
            assert lab_steps[f"haproxy-ha-{node}-{step}"], f"{node} {step}: nothing compared"
    differ = {name: sorted(k for k in {*lab_steps[name], *vm_steps[name]}
                           if lab_steps[name].get(k) != vm_steps[name].get(k))
              for name in lab_steps if lab_steps[name] != vm_steps[name]}
    assert differ == {}, "a lab node is sent something a VM is not (step: inputs)"
    assert on_lab.outputs["configHashes"] == on_vm.outputs["configHashes"]


# --- HAProxy's logs (audit finding 3) ---------------------------------------------------------


def test_haproxy_logs_into_its_chroot_where_rsyslog_listens():
    f = files("prod")
    cfg = f["haproxy.cfg"]
    assert "    chroot /var/lib/haproxy\n" in cfg
    assert "    log /dev/log local0\n" in cfg, "inside the chroot /dev/log is /var/lib/haproxy/dev/log"
    rsyslog = f["rsyslog.conf"]
    assert f'Socket="{PATHS.haproxy_chroot}/dev/log"' in rsyslog
    assert 'File="/var/log/haproxy.log"' in rsyslog
    # rsyslog must not take the system's /dev/log from the distribution's syslog daemon.
    assert 'SysSock.Use="off"' in rsyslog
    assert f["logrotate-haproxy"].startswith("# Managed") and "/var/log/haproxy.log {" in f["logrotate-haproxy"]


@pytest.mark.skipif(not shutil.which("rsyslogd"), reason="rsyslog not installed (make setup)")
def test_rsyslogd_accepts_the_config_and_rejects_a_broken_one(tmp_path):
    good = tmp_path / "rsyslog.conf"
    good.write_text(files("prod")["rsyslog.conf"])
    ok = subprocess.run(["rsyslogd", "-N1", "-f", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(good.read_text().replace('Ruleset="haproxy"', 'Rulesett="haproxy"'))
    assert subprocess.run(["rsyslogd", "-N1", "-f", str(bad)], capture_output=True).returncode != 0


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate not installed (make setup)")
def test_logrotate_accepts_the_rotation_and_the_check_rejects_a_broken_one(tmp_path):
    """The apply step's check: logrotate itself exits 0 after ignoring an unknown option."""
    rotation = tmp_path / "haproxy"
    rotation.write_text(files("prod")["logrotate-haproxy"])
    ok = run_sh(f'logrotate_check "{rotation}"')
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rotation.write_text(rotation.read_text().replace("    daily\n", "    dayly\n"))
    assert subprocess.run(["logrotate", "-d", str(rotation)], capture_output=True).returncode == 0
    bad = run_sh(f'logrotate_check "{rotation}"')
    assert bad.returncode == 1 and "unknown option 'dayly'" in bad.stdout


# --- the resolver (audit finding 4) -----------------------------------------------------------


def test_bootstrap_writes_the_configured_nameservers():
    cfg = stack_config("prod")
    cfg["haproxy-ha:cluster"]["dns"] = ["172.18.10.1", "172.18.10.2"]
    text = files("prod", cfg)["bootstrap.sh"]
    assert "nameserver 172.18.10.1\nnameserver 172.18.10.2\n# END haproxy-ha" in text
    # Before anything else touches the network: it comes ahead of the sshd hardening.
    assert text.index("resolv=/etc/resolv.conf") < text.index("conf=/etc/ssh/sshd_config")


def test_more_than_three_nameservers_is_an_error_naming_the_key():
    cfg = stack_config("prod")
    cfg["haproxy-ha:cluster"]["dns"] = ["172.18.10.1", "172.18.10.2", "172.18.10.3", "172.18.10.4"]
    with pytest.raises(ConfigError) as err:
        build_cluster("prod", cfg, tls_secrets(cfg, STATS_PW))
    assert err.value.key == "haproxy-ha:cluster.dns"


def test_only_the_managed_block_changes(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.lan\nnameserver 9.9.9.9\n")
    block = "# BEGIN haproxy-ha\nnameserver 192.0.2.1\n# END haproxy-ha"
    script = f'with_block "{resolv}" "$BLOCK" > "{resolv}.new" && mv "{resolv}.new" "{resolv}"'
    for _ in range(2):  # a second run changes nothing
        assert run_sh(script, BLOCK=block).returncode == 0
        assert resolv.read_text() == block + "\nsearch example.lan\nnameserver 9.9.9.9\n"
    assert run_sh(f'block_in "{resolv}"').stdout == block + "\n"
    # A file that does not exist yet (the Alpine image has none) gets just the block.
    fresh = tmp_path / "fresh"
    assert run_sh(f'with_block "{fresh}" "$BLOCK"', BLOCK=block).stdout == block + "\n"


# --- cloud-init (audit finding 6) -------------------------------------------------------------


def _stub(tmp_path: Path, status: int, message: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "cloud-init"
    stub.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/calls"\necho "{message}"\nexit {status}\n')
    stub.chmod(0o755)
    return bin_dir


def test_scripts_wait_for_cloud_init_before_touching_packages():
    f = files("prod")
    install = f["install.sh"]
    body = install[install.index("# --- end of library ---"):]
    assert body.index("\nwait_for_cloud_init") < body.index("if have apk") < body.index("apt-get")
    boot = f["bootstrap.sh"]
    body = boot[boot.index("# --- end of library ---"):]
    assert body.index("wait_for_cloud_init") < body.index("resolv=/etc/resolv.conf")


def test_wait_for_cloud_init_waits_and_reports_a_failed_first_boot(tmp_path):
    path = f"{_stub(tmp_path, 1, 'status: error')}:/usr/bin:/bin"
    proc = run_sh("wait_for_cloud_init; echo continued", path=path)
    assert proc.returncode == 0 and proc.stdout.strip() == "continued"
    assert (tmp_path / "calls").read_text() == "status --wait\n"
    assert "WARNING: cloud-init did not finish cleanly (ran: cloud-init status --wait): status: error" in proc.stderr


def test_wait_for_cloud_init_is_silent_when_done_or_absent(tmp_path):
    path = f"{_stub(tmp_path, 0, 'status: done')}:/usr/bin:/bin"
    assert run_sh("wait_for_cloud_init", path=path).stderr == ""
    assert os.path.exists(tmp_path / "calls")
    assert run_sh("wait_for_cloud_init").returncode == 0  # no cloud-init (the lab): nothing to wait for
