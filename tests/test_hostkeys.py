"""Every SSH connection verifies the node's host key recorded in the stack state: a node whose
key changed gets nothing (no command, no stdin, no file), preview and up fail naming it with
both fingerprints, and a rebuilt node or a key rotated on purpose works without a manual step."""

from __future__ import annotations

import re
import subprocess

import pytest

from lab.kit import probe
from lab.stack import LabError
from tests.lab_support import SLOTS, holders, needs_lab, node_ns

pytestmark = needs_lab

DAEMONS = ("haproxy", "keepalived", "rsyslogd", "haproxy-watch", "sshd.pam")


def fingerprint_of(lab, node: str) -> str:
    """The SHA256 fingerprint of the key the node's sshd serves now (ssh-keygen's own)."""
    out = probe.node_exec(node_ns(lab, node), "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").stdout
    return out.split()[1]


def logins(lab, node: str) -> int:
    """How many SSH logins the node's sshd has accepted (its syslog)."""
    log = probe.node_exec(node_ns(lab, node), "cat /var/log/messages", check=False).stdout
    return len(re.findall(r"Accepted publickey", log))


def daemons(lab, node: str) -> list[int]:
    return sorted(p for p in probe.ns_pids(node_ns(lab, node)) if probe.comm(p) in DAEMONS)


def new_host_key(lab, node: str) -> None:
    """What a rebuilt machine (or an impostor at its address) looks like: another host key."""
    probe.node_exec(node_ns(lab, node), "rm -f /etc/ssh/ssh_host_ed25519_key* && "
                                        "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
                                        "kill -HUP $(cat /run/sshd.pid)")
    address = lab.outputs()["nodes"][node]
    probe.wait_for(lambda: subprocess.run(
        ["ip", "netns", "exec", lab.ns("cl"), "ssh-keyscan", "-t", "ed25519", address],
        capture_output=True, text=True).stdout.count(fingerprint_raw(lab, node)) == 1, 10)


def fingerprint_raw(lab, node: str) -> str:
    return probe.node_exec(node_ns(lab, node), "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()


def test_a_node_with_another_host_key_gets_nothing_and_preview_and_up_name_it(lab):
    recorded = lab.outputs()["hostKeys"]
    expected = fingerprint_of(lab, "k3s-lb-02")
    assert recorded["k3s-lb-02"].split()[1] == fingerprint_raw(lab, "k3s-lb-02")
    # Something to restore on that node, so an up would want to send it a file.
    probe.node_exec(node_ns(lab, "k3s-lb-02"), "echo '# edited by hand' >> /etc/haproxy/haproxy.cfg")
    edited = probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /etc/haproxy/haproxy.cfg").stdout
    new_host_key(lab, "k3s-lb-02")
    presented = fingerprint_of(lab, "k3s-lb-02")
    before = {n: daemons(lab, n) for n in SLOTS}
    logged_in = logins(lab, "k3s-lb-02")
    message = (rf"k3s-lb-02 \(192\.0\.2\.12\): host key changed: expected {re.escape(expected)}, "
               rf"presented {re.escape(presented)}; nothing was sent")
    with pytest.raises(LabError, match=message):
        lab.preview()
    with pytest.raises(LabError, match=message):
        lab.up()
    assert probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /etc/haproxy/haproxy.cfg").stdout == edited
    assert logins(lab, "k3s-lb-02") == logged_in, "nothing logged in to the node with the other key"
    assert {n: daemons(lab, n) for n in SLOTS} == before, "no reload anywhere (the others were only read)"
    assert holders(lab) == ["k3s-lb-01"]

    # A rotation on purpose, as the error says: replace the resource that holds the key (no
    # refresh first: it would meet the new key); the same up then restores the node.
    rotate = r"pulumi up --refresh=false --replace 'urn:pulumi:.*haproxy-ha-k3s-lb-02-hostkey'"
    with pytest.raises(LabError, match=rotate):
        lab.up()
    outcome = lab.up(replace=("k3s-lb-02-hostkey",), refresh=False)
    assert "haproxy-ha-k3s-lb-02-hostkey" in outcome.executed
    assert outcome.outputs["hostKeys"]["k3s-lb-02"].split()[1] == fingerprint_raw(lab, "k3s-lb-02")
    assert probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /etc/haproxy/haproxy.cfg").stdout != edited
    lab.preview(expect_no_changes=True)


def test_a_rebuilt_node_is_provisioned_again_with_its_new_key(lab):
    old = lab.outputs()["hostKeys"]["k3s-lb-03"]
    outcome = lab.up(replace=("lab-node-k3s-lb-03",))  # a new machine at the same address
    assert {"haproxy-ha-lab-node-k3s-lb-03", "haproxy-ha-k3s-lb-03-hostkey",
            "haproxy-ha-k3s-lb-03-bootstrap", "haproxy-ha-k3s-lb-03-apply-haproxy"} <= set(outcome.executed)
    new = outcome.outputs["hostKeys"]["k3s-lb-03"]
    assert new != old and new.split()[1] == fingerprint_raw(lab, "k3s-lb-03")
    probe.wait_for(lambda: probe.main_pids(node_ns(lab, "k3s-lb-03"), "keepalived"), 15)
    assert holders(lab) == ["k3s-lb-01"]
    lab.preview(expect_no_changes=True)
