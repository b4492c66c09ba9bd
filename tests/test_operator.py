"""What an operator types on a node, under client load through the VIP, and what they would
notice: `rc-service haproxy reload` never moves the VIP or drops a request; a rejected config
leaves HAProxy as it was; a restart or a stop moves the VIP only off the node that stops
serving. Behaviour, not timing: bench/lab_bench.py measures the outages."""

from __future__ import annotations

import copy
import threading
import time

from components.files.render import RESPAWN
from lab.kit import probe
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, node_ns, transitions, vrrp_state

pytestmark = needs_lab

NODES_AT = {"k3s-lb-01": "192.0.2.11", "k3s-lb-02": "192.0.2.12", "k3s-lb-03": "192.0.2.13"}



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
            # Both kinds of client were served after this reload, before the next one.
            load.served()
            kept.served()
        fresh, ka = load.stop(), kept.stop()
    assert transitions(lab) == before, "a reload moved the VIP"
    assert fresh["failed"] == 0 and fresh["ok"] > 0, fresh
    assert ka["failed"] == 0 and ka["ok"] > 0, ka
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
        load.served()
        rc(lab, "k3s-lb-01", "haproxy restart")
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 20)
        load.served()  # through the VIP again, on its home
        result = load.stop()
    log = probe.node_exec(node_ns(lab, "k3s-lb-02"), "cat /var/log/keepalived-state-change.log").stdout
    assert "MASTER" in log.splitlines()[-2], "the backup held the VIP while HAProxy restarted"
    # Requests fail only inside the failover windows (the VIP leaving, and coming back); how
    # long each lasts is bench/operator_bench.py's figure.
    assert len(result["outages"]) <= 2, result
    back_to_normal(lab)


def test_a_stop_moves_nothing_on_a_backup_and_the_vip_on_the_holder(lab):
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        rc(lab, "k3s-lb-03", "haproxy stop")
        # The stopped backup has gone to FAULT (it cannot take the VIP) while clients are served.
        probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-03") == "FAULT", 10)
        load.served()
        result = load.stop()
    assert result["failed"] == 0, result
    assert holders(lab) == ["k3s-lb-01"]
    moved = {n for n, count in transitions(lab).items() if count != before[n]}
    assert moved <= {"k3s-lb-03"}, f"only the stopped backup changes state (to FAULT): {moved}"
    # Stopped stays stopped: its supervisor, which starts a crashed HAProxy again after
    # RESPAWN["haproxy"].delay, left with it. An observation window, a second longer than that delay.
    time.sleep(RESPAWN["haproxy"].delay + 1)
    assert not probe.main_pids(node_ns(lab, "k3s-lb-03"), "haproxy")
    assert "status: stopped" in rc(lab, "k3s-lb-03", "haproxy status", check=False).stderr + \
        rc(lab, "k3s-lb-03", "haproxy status", check=False).stdout
    rc(lab, "k3s-lb-03", "haproxy start")
    probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-03") == "BACKUP", 10)

    rc(lab, "k3s-lb-01", "haproxy stop")
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 10)
    assert probe.http_get(lab, VIP_URL, 1)[0] == 200
    rc(lab, "k3s-lb-01", "haproxy start")
    back_to_normal(lab)
    probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-02") == "BACKUP", 10)


class Holders:
    """Who holds the VIP, sampled every few ms while it runs: a moment with no holder or with
    two is what a client (or a switch's ARP cache) would notice."""

    def __init__(self, lab):
        self.lab, self.seen, self.stop = lab, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.seen.append(tuple(holders(self.lab)))
            time.sleep(0.005)

    def __enter__(self) -> Holders:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_keepalived_reloads_on_the_holder_move_nothing_and_never_leave_zero_or_two_holders(lab):
    before = transitions(lab)
    ns = node_ns(lab, "k3s-lb-01")
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load, Holders(lab) as seen:
        for _ in range(5):
            rc(lab, "k3s-lb-01", "keepalived reload")
            time.sleep(1)
        for _ in range(5):  # what our own apply step sends, and what a person's `kill -HUP` does
            (parent,) = probe.main_pids(ns, "keepalived")
            probe.os.kill(parent, probe.signal.SIGHUP)
            time.sleep(1)
        result = load.stop()
    assert set(seen.seen) == {("k3s-lb-01",)}, sorted(set(seen.seen))
    assert transitions(lab) == before and result["failed"] == 0, result
    (parent,) = probe.main_pids(ns, "keepalived")
    assert len(probe.children(ns, parent)) == 1, "one VRRP process, as before the reloads"


def test_a_keepalived_restart_on_the_holder_moves_the_vip_at_most_away_and_back(lab):
    with Holders(lab) as seen:
        rc(lab, "k3s-lb-01", "keepalived restart")
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 20)
        time.sleep(1)
    # A stopping keepalived releases the VIP before the backup takes it: moments with no holder
    # between two holders are that handover (the failover outage), not a move.
    held = [h for h in seen.seen if h]
    changes = [h for i, h in enumerate(held) if i == 0 or h != held[i - 1]]
    assert changes in ([("k3s-lb-01",)], [("k3s-lb-01",), ("k3s-lb-02",), ("k3s-lb-01",)]), changes
    back_to_normal(lab)


def test_restarting_haproxy_watch_moves_nothing(lab):
    before = transitions(lab)
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        for node in SLOTS:
            rc(lab, node, "haproxy-watch restart")
        # Each new helper runs and has reported HAProxy serving again.
        probe.wait_for(lambda: all(
            probe.main_pids(node_ns(lab, n), "haproxy-watch") and
            probe.node_exec(node_ns(lab, n), "cat /run/haproxy-down", check=False).stdout.strip() == "0"
            for n in SLOTS), 10)
        load.served()
        result = load.stop()
    assert transitions(lab) == before and result["failed"] == 0, result


def test_a_keepalived_change_rolled_out_by_pulumi_up_moves_only_what_it_asks(lab):
    """A VIP group added on every node (and a priority changed, which keeps the order and so
    changes nothing), under load: the existing VIP stays where it is throughout, the new one
    lands on its node, no request fails."""
    cfg = copy.deepcopy(lab.base_config)
    cluster = cfg["haproxy-ha:cluster"]
    cluster["nodes"][2]["priority"] = 120
    cluster["vips"] = [{"name": "vip", "virtualRouterId": cluster.pop("virtualRouterId"),
                        "addresses": [cluster.pop("vip")]},
                       {"name": "extra", "virtualRouterId": 52, "addresses": ["192.0.2.101/24"],
                        "preferred": "k3s-lb-02"}]
    try:
        with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load, Holders(lab) as seen:
            outcome = lab.up(cfg)
            time.sleep(1)
            result = load.stop()
        applies = [n for n in outcome.executed if n.endswith("apply-keepalived")]
        assert applies == [f"haproxy-ha-{n}-apply-keepalived" for n in ("k3s-lb-03", "k3s-lb-02", "k3s-lb-01")]
        assert set(seen.seen) == {("k3s-lb-01",)}, sorted(set(seen.seen))
        assert result["failed"] == 0, result
        probe.wait_for(lambda: lab.vip_holders("192.0.2.101", NODES_AT) == ["k3s-lb-02"], 10)
    finally:
        lab.up(lab.base_config)
    back_to_normal(lab)
    assert lab.vip_holders("192.0.2.101", NODES_AT) == []
