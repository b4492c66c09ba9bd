"""Desired state on every update: `preview` reads every node first and shows what drifted, one
`up` restores it through the safe apply, a second `up` touches nothing, and a node that is down
is reported without touching the others."""

from __future__ import annotations

import subprocess
import time

import pytest

from lab.kit import probe
from lab.stack import LabError
from tests.lab_support import SLOTS, holders, needs_lab, node_ns, node_states

pytestmark = needs_lab

DAEMONS = ("haproxy", "keepalived", "rsyslogd", "haproxy-watch")


def pids(lab) -> dict[str, list[int]]:
    """Every daemon process on every node (HAProxy's workers included): a reload changes them."""
    return {n: sorted(p for p in probe.ns_pids(node_ns(lab, n)) if probe.comm(p) in DAEMONS) for n in SLOTS}


def test_a_matching_cluster_previews_no_change_and_reports_vrrp_states(lab):
    before = pids(lab)
    lab.preview(expect_no_changes=True)  # the engine itself fails this if anything would change
    assert pids(lab) == before, "a read never changes a node"
    lab.pulumi("refresh", "--yes", "--skip-preview")  # `pulumi refresh`: the read kept in the state
    states = node_states(lab)
    assert states["k3s-lb-01"]["vrrp"] == {"haproxy_vip": "MASTER"}
    assert states["k3s-lb-02"]["vrrp"] == states["k3s-lb-03"]["vrrp"] == {"haproxy_vip": "BACKUP"}
    assert "192.0.2.100" in states["k3s-lb-01"]["addresses"]
    assert all(s["drift"] == [] and s["reachable"] for s in states.values())


def test_drift_is_shown_restored_by_one_up_and_a_second_up_touches_nothing(lab):
    good = probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /etc/haproxy/haproxy.cfg").stdout
    probe.node_exec(node_ns(lab, "k3s-lb-02"), "echo '# edited by hand' >> /etc/haproxy/haproxy.cfg")
    probe.node_exec(node_ns(lab, "k3s-lb-02"), "rc-update del haproxy default")
    probe.node_exec(node_ns(lab, "k3s-lb-03"), "rc-service keepalived stop")
    probe.wait_for(lambda: not probe.main_pids(node_ns(lab, "k3s-lb-03"), "keepalived"), 10)
    probe.node_exec(node_ns(lab, "k3s-lb-01"), "rm /etc/keepalived/check_haproxy.sh")
    probe.node_exec(node_ns(lab, "k3s-lb-01"), "nft flush ruleset")
    probe.node_exec(node_ns(lab, "k3s-lb-02"), "nft add rule inet haproxy_ha input tcp dport 2222 accept")

    preview = lab.preview()
    drift = preview.drift()
    for node, item in [
        ("k3s-lb-02", "haproxy.cfg: edited on the node"),
        ("k3s-lb-02", "haproxy: not enabled at boot"),
        ("k3s-lb-03", "keepalived: not running"),
        ("k3s-lb-01", "check_haproxy.sh: missing on the node"),
        ("k3s-lb-01", "firewall: not loaded (the node accepts everything)"),
        ("k3s-lb-02", "firewall: its rules were changed on the node"),
    ]:
        assert item in drift[node], f"{node}: {item} not in {drift}"
    assert preview.ops() == {f"haproxy-ha-{n}-state": "update" for n in SLOTS}, preview.ops()
    # What a person sees: `pulumi preview --diff` lists each drift item, and never a secret.
    text = lab.preview_text()
    assert "haproxy.cfg: edited on the node" in text and "keepalived: not running" in text
    assert "PRIVATE KEY" not in text and lab.stats_password not in text

    outcome = lab.up()
    assert sorted(outcome.executed) == [f"haproxy-ha-{n}-state" for n in ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")]
    assert probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /etc/haproxy/haproxy.cfg").stdout == good
    assert probe.node_exec(node_ns(lab, "k3s-lb-02"), "test -e /etc/runlevels/default/haproxy").returncode == 0
    assert probe.main_pids(node_ns(lab, "k3s-lb-03"), "keepalived")
    assert probe.node_exec(node_ns(lab, "k3s-lb-01"), "test -x /etc/keepalived/check_haproxy.sh").returncode == 0
    for node in ("k3s-lb-01", "k3s-lb-02"):
        # The rules as rendered again, confirmed over a new connection (no guard left waiting).
        rules = probe.node_exec(node_ns(lab, node), "nft list table inet haproxy_ha").stdout
        assert "policy drop" in rules and "2222" not in rules, node
        assert probe.node_exec(node_ns(lab, node), "test -e /run/haproxy-ha/firewall-pending",
                               check=False).returncode == 1, node
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)

    # A keepalived reload replaces its VRRP child a moment after the restore: wait for quiet.
    snapshots = [pids(lab)]

    def quiet() -> bool:
        time.sleep(2)
        snapshots.append(pids(lab))
        return snapshots[-1] == snapshots[-2]

    probe.wait_for(quiet, 30, interval=0)
    settled = snapshots[-1]
    again = lab.up()
    assert again.executed == [] and pids(lab) == settled, "a node that matches is not touched"


def test_an_unreachable_node_is_reported_and_the_others_are_left_as_they_are(lab):
    bridge, port = lab.ns("br"), SLOTS["k3s-lb-03"]
    before = pids(lab)
    subprocess.run(["ip", "-n", bridge, "link", "set", port, "down"], check=True)
    try:
        preview = lab.preview()
        drift = preview.drift()
        assert drift["k3s-lb-03"] and drift["k3s-lb-03"][0].startswith("node unreachable"), drift
        assert drift["k3s-lb-01"] == drift["k3s-lb-02"] == []
        assert preview.ops() == {"haproxy-ha-k3s-lb-03-state": "update"}, preview.ops()
        with pytest.raises(LabError) as failed:
            lab.up()
        assert "k3s-lb-03-state" in str(failed.value) and "unreachable" in str(failed.value), failed.value
        assert {n: v for n, v in pids(lab).items() if n != "k3s-lb-03"} == \
               {n: v for n, v in before.items() if n != "k3s-lb-03"}
    finally:
        subprocess.run(["ip", "-n", bridge, "link", "set", port, "up"], check=True)
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
    lab.preview(expect_no_changes=True)
