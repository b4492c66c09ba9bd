"""Event-driven failover on a real lab cluster: the VIP leaves a dead HAProxy (master or worker
killed) and comes back once its supervisor has started it again, and never moves for a reload,
the watcher's own death or a saturated CPU. Behaviour, not timing: bench/lab_bench.py and
bench/heal_bench.py measure how fast."""

from __future__ import annotations

import time

import pytest

from lab.kit import probe
from lab.kit.shape import restarted
from tests.lab_support import SLOTS, VIP_URL, Squatter, holders, needs_lab, node_ns, supervised, transitions

pytestmark = needs_lab



def down_flag(lab, node: str) -> str:
    return probe.node_exec(node_ns(lab, node), "cat /run/haproxy-down", check=False).stdout.strip()



def healed(lab, node: str, dead: int) -> None:
    """Its supervisor has started HAProxy again (a master other than `dead`), the watcher says
    it serves, and preempt has brought the VIP home."""
    restarted(node_ns(lab, node), dead)
    probe.wait_for(lambda: down_flag(lab, node) == "0", 10)
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)


def test_the_watcher_runs_supervised_and_reports_haproxy_serving(lab):
    for node in SLOTS:
        assert probe.main_pids(node_ns(lab, node), "haproxy-watch"), node
        assert down_flag(lab, node) == "0", node
        assert supervised(lab, node, "haproxy-watch"), node


@pytest.mark.parametrize("victim", ["master", "worker"])
def test_a_dead_haproxy_releases_the_vip_at_once_and_is_back_by_itself(lab, victim):
    """A worker killed is what the OOM killer does: its master then stops the others and exits."""
    node = node_ns(lab, "k3s-lb-01")
    (master,) = probe.main_pids(node, "haproxy")
    target = master if victim == "master" else probe.children(node, master)[0]
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005, timeout=0.5) as load:
        load.served()
        probe.os.kill(target, probe.signal.SIGKILL)
        # The watcher's flag, then FAULT: the next node holds the VIP and serves.
        probe.wait_for(lambda: down_flag(lab, "k3s-lb-01") == "1", 5)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 5)
        state = probe.node_exec(node, "cat /run/haproxy-ha/vrrp-state").stdout.strip()
        assert state == "FAULT"
        load.served()
        # No one acts: its supervisor starts HAProxy again, and the VIP comes home.
        healed(lab, "k3s-lb-01", master)
        load.served()
        result = load.stop()
    # Requests fail only inside the two failovers (away, and back); bench/heal_bench.py times them.
    assert len(result["outages"]) <= 2, result


def test_ten_reloads_in_a_row_never_move_the_vip(lab):
    node = node_ns(lab, "k3s-lb-01")
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        for _ in range(10):
            master = probe.reload_haproxy(node)
            load.served()
            assert probe.main_pids(node, "haproxy") == [master], "a reload keeps the master's PID"
        time.sleep(2.5)  # longer than the /healthz probe's fall time
        result = load.stop()
    assert transitions(lab) == before, "no VRRP state changed on any node"
    assert holders(lab) == ["k3s-lb-01"] and down_flag(lab, "k3s-lb-01") == "0"
    assert result["failed"] == 0, result


def test_the_watchers_death_moves_nothing_and_it_is_restarted(lab):
    node = node_ns(lab, "k3s-lb-01")
    before = transitions(lab)
    (old,) = probe.kill(node, "haproxy-watch")
    probe.wait_for(lambda: probe.main_pids(node, "haproxy-watch") not in ([], [old]), 10)
    time.sleep(2.5)
    assert transitions(lab) == before and holders(lab) == ["k3s-lb-01"]
    assert down_flag(lab, "k3s-lb-01") == "0"


def test_haproxy_dying_while_the_watcher_is_dead_still_releases_the_vip(lab):
    """No stale "healthy": the restarted watcher, or the /healthz probe, reports the death. HAProxy
    is held down meanwhile (another program takes its port), then let back."""
    node = node_ns(lab, "k3s-lb-01")
    (master,) = probe.main_pids(node, "haproxy")
    with Squatter(lab, "k3s-lb-01", 5000) as squatter:
        probe.kill(node, "haproxy-watch")
        probe.kill(node, "haproxy")
        squatter.holds_port(5)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 10)
        probe.wait_for(lambda: down_flag(lab, "k3s-lb-01") == "1", 10)
    # The port free again, the supervisor's next start succeeds.
    healed(lab, "k3s-lb-01", master)


def test_a_saturated_cpu_for_30_seconds_moves_nothing(lab):
    before = transitions(lab)
    with probe.CpuBurn(30) as burn, probe.Load(lab, VIP_URL, workers=1, interval=0.05, timeout=2) as load:
        burn.wait()
        result = load.stop()
    assert transitions(lab) == before, "a busy machine must not look like a dead node"
    assert holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0 and result["ok"] > 0, result
