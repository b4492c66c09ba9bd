"""The node-state read, without a node: the probe script is valid POSIX sh that only reads,
its output parses, and the drift rules say what differs, never a secret."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from components.files.render import SSHD_BLOCK
from components.nodestate.live import Desired, Live, ServiceWant, drift, parse_probe, sshd_block_hash
from tests.program_support import run

DESIRED = Desired(
    files={"haproxy.cfg": ("/etc/haproxy/haproxy.cfg", "a" * 64), "notify.sh": ("/etc/keepalived/notify.sh", "b" * 64)},
    services=(ServiceWant("haproxy", "/run/haproxy.pid", "haproxy", ("haproxy.cfg",), True),
              ServiceWant("keepalived", "/run/keepalived.pid", "keepalived", ("notify.sh",), True)),
    sshd_block=sshd_block_hash(SSHD_BLOCK),
)


def healthy() -> Live:
    return Live(files={"haproxy.cfg": "a" * 64, "notify.sh": "b" * 64}, mtimes={"haproxy.cfg": 100, "notify.sh": 100},
                running={"haproxy": 200, "keepalived": 200}, enabled={"haproxy": True, "keepalived": True},
                sshd_block=sshd_block_hash(SSHD_BLOCK))


def test_a_node_as_desired_has_no_drift():
    assert drift(DESIRED, healthy()) == []


@pytest.mark.parametrize(
    ("change", "item"),
    [
        (lambda live: live.files.update({"haproxy.cfg": "c" * 64}), "haproxy.cfg: edited on the node"),
        (lambda live: live.files.update({"notify.sh": "missing"}), "notify.sh: missing on the node"),
        (lambda live: live.running.pop("keepalived"), "keepalived: not running"),
        (lambda live: (live.running.pop("haproxy"), live.failed.add("haproxy")),
         "haproxy: not running: it kept crashing and its supervisor gave up"),
        (lambda live: live.unsupervised.add("keepalived"), "keepalived: runs outside its supervisor"),
        (lambda live: live.mtimes.update({"haproxy.cfg": 300}), "haproxy: runs an older version of its files"),
        (lambda live: live.enabled.update({"haproxy": False}), "haproxy: not enabled at boot"),
        (lambda live: setattr(live, "sshd_block", "0" * 64), "sshd_config: the hardening block changed"),
    ],
)
def test_each_kind_of_drift_is_named(change, item):
    live = healthy()
    change(live)
    found = drift(DESIRED, live)
    assert len(found) == 1 and found[0].startswith(item), found


def test_an_unreachable_node_is_one_item():
    assert drift(DESIRED, Live(reachable=False, error="timed out")) == ["node unreachable: timed out"]


def test_the_probe_output_parses():
    live = parse_probe("file haproxy.cfg " + "a" * 64 + " 100\nrun haproxy 200.50\nrun keepalived none\n"
                       "enabled haproxy yes\nfailed keepalived\nunsupervised haproxy\nsshd " + "d" * 64
                       + "\nvrrp haproxy_vip MASTER\naddr 192.0.2.100\n")
    assert live.files == {"haproxy.cfg": "a" * 64} and live.running == {"haproxy": 200.5}
    assert live.enabled == {"haproxy": True} and live.vrrp == {"haproxy_vip": "MASTER"}
    assert live.addresses == ["192.0.2.100"] and live.failed == {"keepalived"}
    assert live.unsupervised == {"haproxy"}


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed (make setup)")
def test_the_probe_is_posix_sh_and_only_reads(tmp_path):
    from components.files.render import render_node, render_probe
    from components.model.model import build_cluster
    from tests.conftest import stack_config, tls_secrets

    cfg = stack_config("lab")
    cluster = build_cluster("lab", cfg, tls_secrets(cfg, "x" * 12))
    node = cluster.nodes[0]
    script = render_probe(cluster, node, render_node(cluster, node))
    path = tmp_path / "probe.sh"
    path.write_text(script)
    for argv in (["busybox", "sh", "-n", str(path)], ["shellcheck", "--shell=sh", "-S", "warning", str(path)]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only reads: the shared library defines helpers that write (log to stderr, with_block
    # prints), but the probe's own lines never redirect into a file, move, kill or enable.
    body = script.split("# --- end of library ---", 1)[1]
    for writes in (" > /", ">>", "rm ", "mv ", "rc-update add", "kill", "sed -i", "svc "):
        assert writes not in body, writes
    assert 'echo "file haproxy.cfg' in body and 'main_pid "/run/haproxy.pid" "haproxy"' in body


def test_the_program_declares_one_node_state_per_node_in_rolling_order():
    declared = run()
    states = {r.name: r for r in declared.resources if r.kind == "NodeStateProvider"}
    assert sorted(states) == [f"haproxy-ha-k3s-lb-0{i}-state" for i in (1, 2, 3)]
    urn = {r.name: r.urn for r in declared.resources}
    assert urn["haproxy-ha-k3s-lb-03-state"] in states["haproxy-ha-k3s-lb-02-state"].dependencies
    assert urn["haproxy-ha-k3s-lb-02-state"] in states["haproxy-ha-k3s-lb-01-state"].dependencies
    lb1 = states["haproxy-ha-k3s-lb-01-state"].inputs
    assert lb1["files"]["haproxy.cfg"][0] == "/etc/haproxy/haproxy.cfg"
    assert [s["name"] for s in lb1["steps"]] == ["bootstrap", "apply-firewall", "apply-rsyslog", "apply-haproxy",
                                                 "apply-haproxy-watch", "apply-keepalived"]
    assert {"privateKey", "texts"} <= states["haproxy-ha-k3s-lb-01-state"].secret_inputs
    # Stack outputs: where the VIPs are and what drifted, per node, as of the last refresh.
    nodes = {"k3s-lb-01", "k3s-lb-02", "k3s-lb-03"}
    assert set(declared.outputs["vrrpStates"]) == nodes and set(declared.outputs["drift"]) == nodes
