"""What an operator types on a node, under client load through the VIP, and what they would
notice: `rc-service haproxy reload` never moves the VIP or drops a request; a rejected config
leaves HAProxy as it was; a restart or a stop moves the VIP only off the node that stops
serving. Behaviour, not timing: bench/lab_bench.py measures the outages."""

from __future__ import annotations

import time

from lab import probe
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, node_ns

pytestmark = needs_lab


def transitions(lab) -> dict[str, int]:
    return {node: probe.vrrp_transitions(node_ns(lab, node)) for node in SLOTS}


def rc(lab, node: str, command: str, check: bool = True):
    return probe.node_exec(node_ns(lab, node), f"rc-service {command}", check=check)


def back_to_normal(lab) -> None:
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 20)
    probe.wait_for(lambda: probe.http_get(lab, VIP_URL, 1)[0] == 200, 10)


def test_ten_rc_service_haproxy_reloads_on_the_holder_move_nothing_and_drop_nothing(lab):
    before = transitions(lab)
    (master,) = probe.main_pids(node_ns(lab, "k3s-lb-01"), "haproxy")
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load, \
            probe.Load(lab, VIP_URL, workers=1, keepalive=True, interval=0.005) as kept:
        for _ in range(10):
            rc(lab, "k3s-lb-01", "haproxy reload")
            time.sleep(0.5)
        fresh, ka = load.stop(), kept.stop()
    assert transitions(lab) == before, "a reload moved the VIP"
    assert fresh["failed"] == 0 and fresh["total"] > 300, fresh
    assert ka["failed"] == 0 and ka["total"] > 300, ka
    assert probe.main_pids(node_ns(lab, "k3s-lb-01"), "haproxy") == [master], "the same master throughout"
    assert holders(lab) == ["k3s-lb-01"]


def test_a_reload_with_a_config_haproxy_rejects_keeps_the_running_haproxy_and_says_why(lab):
    ns = node_ns(lab, "k3s-lb-02")
    (master,) = probe.main_pids(ns, "haproxy")
    workers = probe.children(ns, master)
    probe.node_exec(ns, "cp -p /etc/haproxy/haproxy.cfg /tmp/haproxy.cfg.good && "
                        "echo '    no-such-directive 1' >> /etc/haproxy/haproxy.cfg")
    try:
        out = rc(lab, "k3s-lb-02", "haproxy reload", check=False)
        assert out.returncode != 0
        said = out.stdout + out.stderr
        assert "rejected by haproxy -c" in said and "no-such-directive" in said, said
        assert "not reloaded" in said
        assert probe.main_pids(ns, "haproxy") == [master] and probe.children(ns, master) == workers
    finally:
        probe.node_exec(ns, "mv -f /tmp/haproxy.cfg.good /etc/haproxy/haproxy.cfg")
    assert probe.http_get(lab, VIP_URL)[0] == 200


def test_a_restart_on_the_holder_moves_the_vip_away_and_back(lab):
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005, timeout=0.5) as load:
        time.sleep(0.3)
        rc(lab, "k3s-lb-01", "haproxy restart")
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 20)
        time.sleep(1)
        result = load.stop()
    log = probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /var/log/keepalived-state-change.log").stdout
    assert "MASTER" in log.splitlines()[-2], "the backup held the VIP while HAProxy restarted"
    # Requests fail only inside the failover windows (the VIP leaving, and coming back).
    assert len(result["outages"]) <= 2 and max(result["outages"], default=0) < 1.5, result
    back_to_normal(lab)


def test_a_stop_moves_nothing_on_a_backup_and_the_vip_on_the_holder(lab):
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        rc(lab, "k3s-lb-03", "haproxy stop")
        time.sleep(2)
        result = load.stop()
    assert result["failed"] == 0, result
    assert holders(lab) == ["k3s-lb-01"]
    moved = {n for n, count in transitions(lab).items() if count != before[n]}
    assert moved <= {"k3s-lb-03"}, f"only the stopped backup changes state (to FAULT): {moved}"
    rc(lab, "k3s-lb-03", "haproxy start")

    rc(lab, "k3s-lb-01", "haproxy stop")
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 10)
    assert probe.http_get(lab, VIP_URL, 1)[0] == 200
    rc(lab, "k3s-lb-01", "haproxy start")
    back_to_normal(lab)


def test_restarting_haproxy_watch_moves_nothing(lab):
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        for node in SLOTS:
            rc(lab, node, "haproxy-watch restart")
        time.sleep(3)
        result = load.stop()
    assert transitions(lab) == before and result["failed"] == 0, result
