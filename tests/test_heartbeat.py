"""The heartbeat network (cluster.heartbeat): the VRRP adverts on a second lab bridge that the
client namespace is not on (each node's eth1, 203.0.113.0/24), the VIP on the clients' LAN with
its GARPs. Nothing sent from the clients' LAN moves the VIP, and a node whose heartbeat link
fails goes to FAULT instead of fighting for the VIP."""

from __future__ import annotations

import copy
import subprocess
import time

import pytest

from lab.kit import probe
from lab.kit.intruder import Intruder, heard
from tests.conftest import stack_config
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, running_lab, transitions, vrrp_state

pytestmark = needs_lab

BASE = stack_config("lab")
CLUSTER = BASE["haproxy-ha:cluster"]
VIP = CLUSTER["vip"].split("/")[0]
NODES = {n["name"]: n["address"].split("/")[0] for n in CLUSTER["nodes"]}
HEARTBEAT = {name: f"203.0.113.{address.rsplit('.', 1)[1]}" for name, address in NODES.items()}


def heartbeat_config() -> dict:
    config = copy.deepcopy(BASE)
    cluster = config["haproxy-ha:cluster"]
    cluster["heartbeat"] = {"interface": "eth1"}
    for node in cluster["nodes"]:
        node["heartbeatAddress"] = f"{HEARTBEAT[node['name']]}/24"
    return config


@pytest.fixture(scope="module")
def lab():
    with running_lab(heartbeat_config()) as running:
        yield running




def heartbeat_link(lab, node: str, up: bool) -> None:
    """The node's heartbeat cable, pulled or plugged in (its port on the lab's heartbeat bridge)."""
    port = "h" + SLOTS[node].removeprefix("n")
    subprocess.run(["ip", "-n", lab.ns("br"), "link", "set", port, "up" if up else "down"], check=True)


def test_the_adverts_run_on_the_heartbeat_network_and_the_vip_on_the_clients_lan(lab):
    assert heard(lab.ns("cl"), 1.0) == 0, "no advert reaches the clients' LAN"
    assert heard(lab.ns(SLOTS["k3s-lb-02"]), 1.0, interface="eth1") > 5, "the nodes hear each other on eth1"
    holder = lab.ns(SLOTS["k3s-lb-01"])
    assert VIP in probe.node_exec(holder, "ip -o addr show dev eth0").stdout
    assert VIP not in probe.node_exec(holder, "ip -o addr show dev eth1").stdout
    assert probe.http_get(lab, VIP_URL, 1)[0] == 200


@pytest.mark.parametrize("claimed", ["its own address", "k3s-lb-02's LAN address", "k3s-lb-02's heartbeat address"])
def test_forged_adverts_from_the_clients_lan_move_nothing(lab, claimed):
    source = {"its own address": None, "k3s-lb-02's LAN address": NODES["k3s-lb-02"],
              "k3s-lb-02's heartbeat address": HEARTBEAT["k3s-lb-02"]}[claimed]
    before = transitions(lab)
    with Intruder(lab) as intruder, probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        for to in (["224.0.0.18"], list(NODES.values())):
            attack = intruder.adverts(vrid=CLUSTER["virtualRouterId"], priority=254, addresses=[VIP], to=to,
                                      interval=0.05, seconds=2, source=source)
            assert attack.wait(30) == 0
        load.served()
        result = load.stop()
    assert transitions(lab) == before, "no VRRP state changed on any node"
    assert holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0, result


def test_a_backup_whose_heartbeat_link_fails_goes_to_fault_and_moves_nothing(lab):
    before = transitions(lab)
    heartbeat_link(lab, "k3s-lb-03", up=False)
    try:
        probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-03") == "FAULT", 5)
        time.sleep(1)  # an observation window: nothing else may change meanwhile
        assert holders(lab) == ["k3s-lb-01"]
        assert {n: c for n, c in transitions(lab).items() if n != "k3s-lb-03"} == \
               {n: c for n, c in before.items() if n != "k3s-lb-03"}
    finally:
        heartbeat_link(lab, "k3s-lb-03", up=True)
    probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-03") == "BACKUP", 10)


def test_the_holder_whose_heartbeat_link_fails_hands_the_vip_on_and_never_fights_for_it(lab):
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        heartbeat_link(lab, "k3s-lb-01", up=False)
        try:
            probe.wait_for(lambda: vrrp_state(lab, "k3s-lb-01") == "FAULT", 5)
            probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 5)
            for _ in range(10):  # one holder throughout, never two
                assert holders(lab) == ["k3s-lb-02"]
                time.sleep(0.1)
            load.served()
        finally:
            heartbeat_link(lab, "k3s-lb-01", up=True)
        # Plugged in again: preempt brings the VIP home.
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
        load.served()
        result = load.stop()
    # Requests fail only inside the two moves (bench figures say how long).
    assert len(result["outages"]) <= 2, result
