"""Failure detection at the default setting on a real lab cluster: a node whose keepalived shares
its CPU with a busy loop is not taken for dead, and a node that is lost (its link cut) is
replaced. Behaviour, not timing: bench/failover_ms_bench.py --detection measures how fast."""

from __future__ import annotations

import subprocess
import time

import pytest

from components.model import detection
from lab.kit import probe
from lab.kit.stall import SharedCpu, keepalived_pids
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, node_ns, transitions

pytestmark = needs_lab



def test_the_nodes_run_the_default_advert_interval(lab):
    for node in SLOTS:
        conf = probe.node_exec(node_ns(lab, node), "cat /etc/keepalived/keepalived.conf").stdout
        assert f"advert_int {detection.ADVERT_INT['default']:g}\n" in conf, node


@pytest.mark.parametrize("node", ["k3s-lb-01", "k3s-lb-02"])
def test_keepalived_sharing_a_cpu_with_a_busy_loop_moves_nothing(lab, node):
    """The holder (its adverts must keep coming) and a backup (it must not take over)."""
    before = transitions(lab)
    with SharedCpu(keepalived_pids(node_ns(lab, node)), seconds=15) as shared, \
            probe.Load(lab, VIP_URL, workers=1, interval=0.05, timeout=2) as load:
        shared.wait()
        result = load.stop()
    time.sleep(1)
    assert transitions(lab) == before, "a busy CPU must not look like a dead node"
    assert holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0 and result["ok"] > 0, result


def test_a_lost_node_is_replaced_and_takes_the_vip_back_when_it_returns(lab):
    bridge_port = ["ip", "-n", lab.ns("br"), "link", "set", SLOTS["k3s-lb-01"]]
    subprocess.run([*bridge_port, "down"], check=True)
    try:
        probe.wait_for(lambda: "k3s-lb-02" in holders(lab), 5)
        assert probe.http_get(lab, VIP_URL, 1)[0] == 200
    finally:
        subprocess.run([*bridge_port, "up"], check=True)
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)
    assert probe.http_get(lab, VIP_URL, 1)[0] == 200
