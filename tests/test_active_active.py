"""The lab-aa stack on a real lab: three dual-stack VIP groups, one per node. Every address
answers, and a node's dead HAProxy moves only its own group, both families together."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from lab.kit import probe
from lab.stack import Lab
from tests.conftest import stack_config
from tests.lab_support import needs_lab, outputs

pytestmark = needs_lab

SLOTS = {"k3s-lb-01": "n11", "k3s-lb-02": "n12", "k3s-lb-03": "n13"}
EXPECTED = {"web-a": "k3s-lb-01", "web-b": "k3s-lb-02", "web-c": "k3s-lb-03"}


@pytest.fixture(scope="module")
def lab():
    lab = Lab(f"a{uuid.uuid4().hex[:8]}", stack_config("lab-aa"), log=lambda line: None)
    try:
        lab.up()
        probe.wait_for(lambda: placement(lab) == {g: [n, n] for g, n in EXPECTED.items()}, 20)
        yield lab
    finally:
        lab.down()


def placement(lab) -> dict[str, list[str]]:
    """group -> the holder of each of its addresses (IPv4, IPv6)."""
    out = outputs(lab)
    return {group: [",".join(lab.vip_holders(a, out["nodes"])) for a in addresses]
            for group, addresses in out["vips"].items()}


def answers(lab, address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return subprocess.run(["ip", "netns", "exec", lab.ns("cl"), "curl", "-sg", "--max-time", "2",
                           f"http://{host}:80/"], capture_output=True, text=True).stdout


def test_every_address_of_every_group_answers(lab):
    addresses = [a for group in outputs(lab)["vips"].values() for a in group]
    assert len(addresses) == 6 and sum(":" in a for a in addresses) == 3
    for address in addresses:
        assert answers(lab, address).startswith("backend 198.51.100.2"), address


def test_each_node_holds_exactly_one_group(lab):
    held = placement(lab)
    assert sorted(holders[0] for holders in held.values()) == sorted(SLOTS)
    assert all(v4 == v6 for v4, v6 in held.values()), held


def test_a_dead_haproxy_moves_only_its_group_both_families_and_it_returns(lab):
    node = lab.ns(SLOTS["k3s-lb-02"])
    assert probe.kill(node, "haproxy")
    moved = {**{g: [n, n] for g, n in EXPECTED.items()}, "web-b": ["k3s-lb-01", "k3s-lb-01"]}
    probe.wait_for(lambda: placement(lab) == moved, 10)
    v4, v6 = outputs(lab)["vips"]["web-b"]
    assert answers(lab, v4) and answers(lab, v6)
    probe.wait_for(lambda: not any(probe.comm(p) == "haproxy" for p in probe.ns_pids(node)), 10)
    probe.node_exec(node, "rc-service haproxy restart")
    probe.wait_for(lambda: placement(lab) == {g: [n, n] for g, n in EXPECTED.items()}, 15)
