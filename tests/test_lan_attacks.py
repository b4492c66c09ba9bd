"""A hostile host on the clients' LAN (lab/kit/intruder.py at 192.0.2.66, neither the bastion nor
a node), under client load through the VIP: what its scan finds, what its forged VRRP adverts
move, and a firewall change that would shut pulumi out. docs/security.md has the threat model
these measure."""

from __future__ import annotations

import copy

import pytest

from lab.kit import probe
from lab.kit.intruder import Intruder, scan
from lab.stack import LabError
from tests.conftest import stack_config
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, node_ns, transitions

pytestmark = needs_lab

CONFIG = stack_config("lab")
CLUSTER = CONFIG["haproxy-ha:cluster"]
VIP = CLUSTER["vip"].split("/")[0]
NODES = {n["name"]: n["address"].split("/")[0] for n in CLUSTER["nodes"]}
FRONTEND_PORTS = sorted({int(fe["bind"].rsplit(":", 1)[1]) for fe in CONFIG["haproxy-ha:haproxy"]["frontends"]})
ADMIN_PORTS = [22, CONFIG["haproxy-ha:haproxy"]["stats"]["port"]]
# What a scan tries: the frontends, SSH and the stats page, and ports nothing listens on.
PORTS = sorted({*FRONTEND_PORTS, *ADMIN_PORTS, 21, 23, 3306, 8080})
TARGETS = [VIP, *NODES.values()]
ADVERT_INT = 0.05  # the lab's failureDetection default (components/model/detection.py)



@pytest.fixture(scope="module")
def intruder(lab):
    with Intruder(lab) as host:
        yield host


def test_a_scan_from_the_clients_lan_finds_only_the_frontends(lab, intruder):
    found = intruder.scan(TARGETS, PORTS)
    assert found == {(t, p) for t in TARGETS for p in FRONTEND_PORTS}, sorted(found)


def test_the_admin_network_reaches_ssh_and_the_stats_page(lab):
    # The lab's adminNetworks is the bastion, the client namespace's address.
    found = scan(lab.ns("cl"), list(NODES.values()), ADMIN_PORTS)
    assert found == {(a, p) for a in NODES.values() for p in ADMIN_PORTS}, sorted(found)


def attacked(lab, intruder, *, priority: int, to: list[str], source: str | None = None) -> dict:
    """3 s of forged adverts for the lab's VRID and VIP, under load; the load's result."""
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        attack = intruder.adverts(vrid=CLUSTER["virtualRouterId"], priority=priority, addresses=[VIP], to=to,
                                  interval=ADVERT_INT, seconds=3, source=source)
        assert attack.wait(30) == 0 and int(attack.stdout.read()) >= 3 / ADVERT_INT * len(to) * 0.8
        load.served()
        return load.stop()


@pytest.mark.parametrize("priority", [254, 255])
def test_forged_multicast_adverts_from_the_intruders_own_address_move_nothing(lab, intruder, priority):
    before = transitions(lab)
    result = attacked(lab, intruder, priority=priority, to=["224.0.0.18"])
    assert transitions(lab) == before, "no VRRP state changed on any node"
    assert holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0, result


def test_forged_adverts_spoofing_a_peers_address_still_take_the_vip_by_multicast(lab, intruder):
    """The firewall's limit, as docs/security.md states it: a source address is only a claim, and
    multicast adverts claiming to be a backup at priority 254 pass it. The heartbeat network is
    the defence (adverts where clients cannot send)."""
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        attack = intruder.adverts(vrid=CLUSTER["virtualRouterId"], priority=254, addresses=[VIP],
                                  to=["224.0.0.18"], interval=ADVERT_INT, seconds=3, source=NODES["k3s-lb-02"])
        probe.wait_for(lambda: "k3s-lb-01" not in holders(lab), 3)
        assert attack.wait(30) == 0
        # The attack over, the real nodes settle again: preempt gives the VIP back to k3s-lb-01.
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)
        load.served()
        load.stop()


def test_the_firewall_is_an_openrc_service_that_reloads_and_whose_stop_is_drift(lab, intruder):
    node = node_ns(lab, "k3s-lb-02")
    probe.node_exec(node, "rc-service nftables status")  # started, as after a boot
    probe.node_exec(node, "rc-service nftables reload")
    lab.preview(expect_no_changes=True)
    probe.node_exec(node, "rc-service nftables stop")
    assert (NODES["k3s-lb-02"], 22) in intruder.scan([NODES["k3s-lb-02"]], [22]), "stopped: the node is open"
    assert "firewall: not loaded (the node accepts everything)" in lab.preview().drift()["k3s-lb-02"]
    lab.up()
    probe.node_exec(node, "rc-service nftables status")
    assert intruder.scan([NODES["k3s-lb-02"]], [22]) == set()


def live_admin_set(lab, node: str) -> str:
    return probe.node_exec(node_ns(lab, node), "nft list set inet haproxy_ha admin4").stdout


def test_a_firewall_that_would_shut_pulumi_out_is_undone_and_the_rollout_stops_at_the_first_node(lab):
    before = {node: live_admin_set(lab, node) for node in SLOTS}
    shut_out = copy.deepcopy(lab.base_config)
    shut_out["haproxy-ha:cluster"]["adminNetworks"] = ["192.0.2.250/32"]  # not the bastion
    with probe.Load(lab, VIP_URL, workers=1, interval=0.01) as load:
        # The rollout's first node is the lowest priority backup: its confirmation cannot get in.
        with pytest.raises(LabError, match=r"(?s)k3s-lb-03-confirm-firewall"):
            lab.up(shut_out)
        # The node restores its previous rules by itself, within its probation (60 s).
        probe.wait_for(lambda: live_admin_set(lab, "k3s-lb-03") == before["k3s-lb-03"], 90, interval=1)
        load.served()
        result = load.stop()
    assert {node: live_admin_set(lab, node) for node in SLOTS} == before, "no node keeps the new rules"
    ssh = probe.node_exec(node_ns(lab, "k3s-lb-03"), "cat /etc/nftables.nft")
    assert "192.0.2.250" not in ssh.stdout, "the boot file never took the unconfirmed rules"
    assert result["failed"] == 0, result
    # The next `up` says what happened, naming the node, until the config is fixed.
    with pytest.raises(LabError, match=r"(?s)k3s-lb-03.*not confirmed within 60 s.*adminNetworks"):
        lab.up(shut_out)
    lab.up(copy.deepcopy(lab.base_config))
    assert scan(lab.ns("cl"), [NODES["k3s-lb-03"]], [22]) == {(NODES["k3s-lb-03"], 22)}


@pytest.fixture(scope="module")
def unicast(lab):
    """The same lab with cluster.unicast: adverts to each peer's address, check_unicast_src."""
    config = copy.deepcopy(lab.base_config)
    config["haproxy-ha:cluster"]["unicast"] = True
    lab.up(config)
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
    return config


@pytest.mark.parametrize("priority", [254, 255])
def test_forged_unicast_adverts_from_the_intruders_own_address_move_nothing(lab, intruder, unicast, priority):
    before = transitions(lab)
    result = attacked(lab, intruder, priority=priority, to=list(NODES.values()))
    assert transitions(lab) == before, "no VRRP state changed on any node"
    assert holders(lab) == ["k3s-lb-01"]
    assert result["failed"] == 0, result


def test_forged_unicast_adverts_spoofing_a_peers_address_still_take_the_vip(lab, intruder, unicast):
    """As by multicast: a peer's address passes the firewall and check_unicast_src alike."""
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        attack = intruder.adverts(vrid=CLUSTER["virtualRouterId"], priority=254, addresses=[VIP],
                                  to=[NODES["k3s-lb-01"], NODES["k3s-lb-03"]], interval=ADVERT_INT, seconds=3,
                                  source=NODES["k3s-lb-02"])
        probe.wait_for(lambda: "k3s-lb-01" not in holders(lab), 3)
        assert attack.wait(30) == 0
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 10)
        load.served()
        load.stop()
