"""A node heals itself: supervise-daemon starts a crashed keepalived again and the VIP returns
home (HAProxy's own crashes: tests/test_failover.py); a crash loop ends after a bounded number of
restarts, with a node in FAULT that never takes the VIP, one line in its log that says why, and
the next preview naming the daemon. Times: bench/heal_bench.py."""

from __future__ import annotations

import os
import signal

import pytest

from components.files.render import RESPAWN
from lab.kit import probe
from lab.kit.shape import restarted
from tests.lab_support import SLOTS, VIP_URL, Squatter, holders, needs_lab, node_ns, supervised, transitions, vrrp_state

pytestmark = needs_lab



def log_lines(lab, node: str) -> list[str]:
    """The node's system log (busybox syslogd, as on Alpine)."""
    return probe.node_exec(node_ns(lab, node), "cat /var/log/messages", check=False).stdout.splitlines()


@pytest.mark.parametrize("node", ["k3s-lb-01", "k3s-lb-02"])
def test_a_crashed_keepalived_is_back_by_itself_and_only_the_holders_crash_moves_the_vip(lab, node):
    ns = node_ns(lab, node)
    before = transitions(lab)
    seen = len(log_lines(lab, node))
    (dead,) = probe.main_pids(ns, "keepalived")
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005, timeout=0.5) as load:
        load.served()
        os.kill(dead, signal.SIGKILL)
        if node == "k3s-lb-01":
            # Its VRRP process leaves with it (a priority-0 advert): the next node takes over.
            probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 5)
            load.served()
        # Its supervisor starts keepalived again; with preempt the VIP comes home.
        restarted(ns, dead, "keepalived")
        probe.wait_for(lambda: vrrp_state(lab, node) in ("MASTER", "BACKUP"), 10)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)
        load.served()
        result = load.stop()
    # One start was enough: none refused while the old VRRP process was still leaving.
    exits = [line for line in log_lines(lab, node)[seen:] if "/usr/sbin/keepalived, pid" in line]
    assert len(exits) == 1, exits
    if node != "k3s-lb-01":
        moved = {n for n, count in transitions(lab).items() if count != before[n]}
        assert moved == {node}, f"only the crashed backup changes state: {moved}"
        assert result["failed"] == 0, result
    else:
        assert len(result["outages"]) <= 2, result


def test_a_crash_loop_is_bounded_and_the_node_stays_in_fault_says_why_and_shows_as_drift(lab):
    ns = node_ns(lab, "k3s-lb-02")
    seen = len(log_lines(lab, "k3s-lb-02"))
    (master,) = probe.main_pids(ns, "haproxy")
    with Squatter(lab, "k3s-lb-02", 5000) as squatter:
        os.kill(master, signal.SIGKILL)
        squatter.holds_port(5)
        # Every start fails to bind; after respawn_max restarts within respawn_period, the
        # supervisor gives up and OpenRC marks the service failed.
        probe.wait_for(lambda: probe.node_exec(ns, "test -e /run/openrc/failed/haproxy", check=False).returncode == 0,
                       RESPAWN["haproxy"].delay * (RESPAWN["haproxy"].max + 2) + 10, interval=0.2)
        log = log_lines(lab, "k3s-lb-02")[seen:]
        exits = [line for line in log if "/usr/sbin/haproxy, pid" in line]
        assert len(exits) == RESPAWN["haproxy"].max + 1, "\n".join(log)  # the kill, then each failed start
        assert sum("gave up" in line and "haproxy-ha" in line for line in log) == 1, "\n".join(log)
        assert "cannot bind socket" in probe.node_exec(ns, "cat /var/log/haproxy-master.log").stdout
        assert not probe.main_pids(ns, "haproxy") and vrrp_state(lab, "k3s-lb-02") == "FAULT"

        # The holder's HAProxy dies: the VIP skips the failed node for the one after it.
        before = transitions(lab)
        (holder_master,) = probe.main_pids(node_ns(lab, "k3s-lb-01"), "haproxy")
        os.kill(holder_master, signal.SIGKILL)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-03"], 5)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)  # healed
        after = transitions(lab)
        assert after["k3s-lb-02"] == before["k3s-lb-02"], "the failed node stayed in FAULT throughout"
        assert vrrp_state(lab, "k3s-lb-02") == "FAULT"

        drift = lab.preview().drift()
        assert "haproxy: not running: it kept crashing and its supervisor gave up (rc-status: failed)" \
            in drift["k3s-lb-02"], drift
        assert not drift["k3s-lb-01"] and not drift["k3s-lb-03"], drift
    # The port free again, `pulumi up` restores the node.
    lab.up()
    assert probe.main_pids(ns, "haproxy") and vrrp_state(lab, "k3s-lb-02") == "BACKUP"
    assert probe.node_exec(ns, "test -e /run/openrc/failed/haproxy", check=False).returncode != 0
    assert holders(lab) == ["k3s-lb-01"] and probe.http_get(lab, VIP_URL, 1)[0] == 200


def test_every_node_runs_haproxy_and_keepalived_under_their_supervisor(lab):
    for node in SLOTS:
        for daemon in ("haproxy", "keepalived"):
            assert supervised(lab, node, daemon), f"{node}: {daemon}"


def test_a_haproxy_running_outside_its_supervisor_is_drift_and_up_hands_it_over_without_a_gap(lab):
    """Started by hand, or by an older haproxy-ha whose OpenRC script ran it with -D: a crash
    would not be restarted. The preview says so; under load, `pulumi up` starts a supervised
    master that takes its sockets, and the old one finishes its connections: nothing moves,
    nothing fails."""
    ns = node_ns(lab, "k3s-lb-01")
    probe.node_exec(ns, "rc-service haproxy stop")
    probe.node_exec(ns, "haproxy -D -W -p /run/haproxy.pid -f /etc/haproxy/haproxy.cfg")
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)
    (old,) = probe.main_pids(ns, "haproxy")
    assert not supervised(lab, "k3s-lb-01", "haproxy")
    drift = lab.preview().drift()
    assert any(item.startswith("haproxy: runs outside its supervisor") for item in drift["k3s-lb-01"]), drift
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        lab.up()
        probe.wait_for(lambda: old not in probe.ns_pids(ns), 30)  # it finished and left
        load.served()
        result = load.stop()
    assert supervised(lab, "k3s-lb-01", "haproxy")
    assert transitions(lab) == before and holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0, result
    lab.preview(expect_no_changes=True)
