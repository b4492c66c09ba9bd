"""A fresh lab node starts the way a fresh Alpine cloud VM does, wherever a namespace allows,
and nothing it does reaches the host's /etc, /dev or /usr/sbin."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from lab import labctl
from lab.kit import probe
from tests.lab_support import needs_lab

pytestmark = needs_lab

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB lab@test"


@pytest.fixture(scope="module")
def node():
    prefix = f"hha-t{uuid.uuid4().hex[:6]}"
    host_etc = sorted(os.listdir("/etc"))
    try:
        labctl.net_up(prefix, "192.0.2.1/24")
        labctl.node_up(prefix, "11", "fresh-01", "192.0.2.11/24", "192.0.2.1", KEY)
        yield labctl.netns(prefix, "n11")
    finally:
        labctl.net_down(prefix)
        if labctl.LAB_ROOT.is_dir() and not any(labctl.LAB_ROOT.iterdir()):
            labctl.LAB_ROOT.rmdir()
    assert sorted(os.listdir("/etc")) == host_etc, "the node wrote into the host's /etc"


def run(ns: str, command: str) -> subprocess.CompletedProcess:
    return probe.node_exec(ns, command, check=False)


def test_no_resolver_until_bootstrap_writes_one(node):
    assert run(node, "test -e /etc/resolv.conf").returncode == 1
    assert Path("/etc/resolv.conf").exists(), "the host keeps its own"


def test_its_own_syslog_on_its_own_dev_log(node):
    host_has_dev_log = Path("/dev/log").exists()
    assert run(node, "test -S /dev/log").returncode == 0
    run(node, "logger -t lab-test hello-from-the-node")
    probe.wait_for(lambda: "hello-from-the-node" in run(node, "cat /var/log/messages").stdout, 5)
    assert Path("/dev/log").exists() == host_has_dev_log, "the host's /dev was not touched"


def test_sshd_runs_under_the_production_name_only(node):
    assert run(node, "command -v sshd").returncode != 0
    assert run(node, "test -x /usr/sbin/sshd.pam").returncode == 0
    assert Path("/usr/sbin/sshd").exists(), "the host keeps its sshd"
    assert [probe.comm(p) for p in probe.main_pids(node, "sshd.pam")] == ["sshd.pam"]
    assert run(node, "cat /run/sshd.pid").stdout.strip().isdigit()


@pytest.mark.parametrize("folder", ["/etc", "/usr/sbin", "/usr/local/sbin"])
def test_what_the_program_writes_stays_in_the_node(node, folder):
    marker = f"haproxy-ha-labnode-{uuid.uuid4().hex}"
    assert run(node, f"echo x > {folder}/{marker}").returncode == 0
    assert run(node, f"test -f {folder}/{marker}").returncode == 0
    assert not Path(folder, marker).exists()


def test_etc_is_the_nodes_own(node):
    assert run(node, "rc-update add rsyslog default").returncode == 0
    assert not Path("/etc/runlevels/default/rsyslog").exists()
    assert run(node, "hostname").stdout.strip() == "fresh-01"
