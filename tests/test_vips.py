"""Several VIP groups: each group's addresses move together (one instance per family in a sync
group), groups spread over the nodes, IPv6 on every frontend, and the checks that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.config.errors import ConfigError
from components.config.schema import load_stack
from components.config.vridcheck import check_vrids, other_stacks
from components.files.render import render_node
from components.model.model import build_cluster
from components.model.vrrp import effective_priorities
from tests.conftest import TRACKED_STACKS, stack_config, tls_secrets, tracked_project
from tests.program_support import run

STATS_PW = "correct horse battery"
C = "haproxy-ha:cluster"


def aa() -> dict:
    return stack_config("lab-aa")


def cluster(cfg: dict, stack: str = "lab-aa"):
    return build_cluster(stack, cfg, tls_secrets(cfg, STATS_PW))


def keepalived(cfg: dict, node: int) -> str:
    c = cluster(cfg)
    return {f.name: f.text for f in render_node(c, c.nodes[node])}["keepalived.conf"]


def test_each_group_is_held_by_its_own_node_and_the_others_follow_in_node_order():
    c = cluster(aa())
    assert c.holders == {"web-a": "k3s-lb-01", "web-b": "k3s-lb-02", "web-c": "k3s-lb-03"}
    prios = {n.name: {g.name: g.instances[0].priority for g in n.groups} for n in c.nodes}
    # web-c: k3s-lb-03 first, then k3s-lb-01, then k3s-lb-02 (node order).
    # keepalived runs the order at the top of the range: 254, 253, 189.
    assert prios["k3s-lb-02"] == {"web-a": 253, "web-b": 254, "web-c": 189}
    assert prios["k3s-lb-01"] == {"web-a": 254, "web-b": 253, "web-c": 253}
    assert prios["k3s-lb-03"] == {"web-a": 189, "web-b": 189, "web-c": 254}


@pytest.mark.parametrize("count", [2, 3, 4, 5, 6, 100])
def test_keepalived_runs_the_failover_order_at_the_top_of_the_range(count):
    """The first backup's skew time after a priority-0 advert, (256 - 253) / 256 x 0.05 s, is
    0.6 ms; the others stay apart, so the first backup's advert reaches them in time."""
    prios = effective_priorities(count)
    assert prios[:2] == [254, 253] and len(prios) == count
    assert all(a > b for a, b in zip(prios, prios[1:], strict=False)) and prios[-1] >= 1
    gaps = {a - b for a, b in zip(prios[1:], prios[2:], strict=False)}
    assert gaps <= set(range(2, 65)) and (gaps == {64} or count == 2 or count > 5)


def test_both_families_of_a_group_move_together():
    text = keepalived(aa(), 1)
    assert "vrrp_sync_group web-b {\n    group {\n        web-b_v4\n        web-b_v6\n    }\n}" in text
    v6 = text[text.index("vrrp_instance web-b_v6 {"):]
    assert "virtual_router_id 62" in v6 and "2001:db8:0:1::101/64 dev eth0" in v6 and "state MASTER" in v6
    for name in ("web-a_v4", "web-a_v6", "web-b_v4", "web-c_v6"):
        assert f"vrrp_instance {name} {{" in text


def test_preferred_moves_a_group_to_that_node():
    cfg = aa()
    cfg[C]["vips"][2]["preferred"] = "k3s-lb-01"
    assert cluster(cfg).holders["web-c"] == "k3s-lb-01"


def test_the_single_vip_form_keeps_its_file():
    prod = cluster(stack_config("prod"), "prod")
    text = {f.name: f.text for f in render_node(prod, prod.nodes[0])}["keepalived.conf"]
    assert "vrrp_instance haproxy_vip {" in text and "vrrp_sync_group" not in text
    assert "priority 254" in text


def test_every_frontend_and_the_stats_page_listen_on_ipv6_too():
    c = cluster(aa())
    text = {f.name: f.text for f in render_node(c, c.nodes[0])}["haproxy.cfg"]
    for port in (8404, 80, 7000):
        assert f"    bind *:{port}\n    bind [::]:{port} v6only\n" in text
    prod = cluster(stack_config("prod"), "prod")
    assert "[::]" not in {f.name: f.text for f in render_node(prod, prod.nodes[0])}["haproxy.cfg"]


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (lambda c: c["vips"][1].update(virtualRouterId=61), "vips[1].virtualRouterId", "duplicates vips[0]"),
        (lambda c: c["vips"][0]["addresses"].__setitem__(1, "2001:db8:0:2::100/64"), "vips[0].addresses[1]",
         "not in the nodes' subnet"),
        (lambda c: c["vips"][0]["addresses"].__setitem__(0, "198.51.100.12/24"), "vips[0].addresses[0]",
         "also a node address"),
        (lambda c: c["vips"][1]["addresses"].__setitem__(0, "198.51.100.100/24"), "vips[1].addresses[0]",
         "also in group web-a"),
        (lambda c: c["vips"][0].update(preferred="nope"), "vips[0].preferred", "no node named 'nope'"),
        (lambda c: (c.update(unicast=True), c["nodes"][2].pop("address6")), "nodes[2].address6",
         "unicast VRRP over IPv6"),
        (lambda c: c["nodes"][2].pop("address6"), "vips[0].addresses[1]", "every node needs address6"),
        (lambda c: c.update(vip="198.51.100.99/24"), "vip", "either vip + virtualRouterId"),
        (lambda c: c.pop("vips"), "vip", "required"),
        (lambda c: c["vips"][0]["addresses"].__setitem__(1, "2001:db8:0:1::/64"), "vips[0].addresses[1]",
         "cannot be a VIP"),
        (lambda c: c.update(gateway6="2001:db8:0:1::12"), "gateway6", "also a node address"),
        (lambda c: c.update(gateway6="2001:db8:0:1::101"), "gateway6", "also a VIP"),
    ],
)
def test_bad_groups_name_the_key(change, key, reason):
    cfg = aa()
    change(cfg[C])
    with pytest.raises(ConfigError) as err:
        load_stack(cfg)
    assert err.value.key == f"{C}.{key}"
    assert reason in err.value.reason


def _project(tmp_path: Path, stacks: dict[str, dict]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, config in stacks.items():
        (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def test_a_vrid_another_stack_uses_on_an_overlapping_subnet_is_an_error(tmp_path):
    prod = stack_config("prod")
    staging = copy.deepcopy(prod)
    staging[C]["vip"] = "172.18.10.200/24"
    project = _project(tmp_path, {"prod": prod, "staging": staging})
    with pytest.raises(ConfigError) as err:
        check_vrids(load_stack(staging), other_stacks(project, "staging"))
    assert err.value.key == f"{C}.virtualRouterId"
    assert "51 is also used by stack prod (Pulumi.prod.yaml) on 172.18.10.0/24" in err.value.reason
    # Another VRID, or another segment, is fine.
    staging[C]["virtualRouterId"] = 52
    check_vrids(load_stack(staging), other_stacks(_project(tmp_path, {"staging": staging}), "staging"))
    elsewhere = copy.deepcopy(prod)
    elsewhere[C].update(vip="172.18.20.100/24", gateway="172.18.20.1")
    for i, node in enumerate(elsewhere[C]["nodes"]):
        node["address"] = f"172.18.20.{11 + i}/24"
    check_vrids(load_stack(elsewhere), other_stacks(project, "elsewhere"))


def test_lab_stacks_never_share_a_segment(tmp_path):
    """Each lab stack gets its own bridge: its VRID and subnet may be another stack's, lab or
    proxmox. The same pair on two stacks on platform proxmox is a conflict (the control: the
    check ran, on these very files)."""
    lab = stack_config("lab")
    lab["haproxy-ha:sshPublicKey"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB lab@test"
    as_vm = copy.deepcopy(lab)
    as_vm["haproxy-ha:platform"] = "proxmox"
    mixed = _project(tmp_path / "mixed", {"lab": lab, "copy": lab, "vm": as_vm})
    # A lab stack is never among the stacks another one is compared with...
    assert other_stacks(mixed, "vm") == {}
    assert set(other_stacks(mixed, "lab")) == {"vm"}
    check_vrids(load_stack(as_vm), other_stacks(mixed, "vm"))
    # ...and is itself compared with none: its own bridge, whatever the others use.
    check_vrids(load_stack(lab), other_stacks(mixed, "lab"))
    check_vrids(load_stack(lab), other_stacks(mixed, "copy"))
    twins = _project(tmp_path / "twins", {"vm": as_vm, "vm2": as_vm})
    with pytest.raises(ConfigError) as err:
        check_vrids(load_stack(as_vm), other_stacks(twins, "vm2"))
    assert err.value.key == f"{C}.virtualRouterId"
    assert "51 is also used by stack vm (Pulumi.vm.yaml) on 192.0.2.0/24" in err.value.reason


def test_the_shipped_stacks_do_not_conflict():
    """Every tracked stack passes the check against the others, and each stack on platform
    proxmox is really compared with every other one (a twin of its cluster is caught)."""
    from components.stackfile import list_stacks, read_stack

    project = tracked_project()
    assert list_stacks(project) == sorted(TRACKED_STACKS)
    specs = {stack: load_stack(read_stack(stack, project, environ={}).config) for stack in TRACKED_STACKS}
    for stack, spec in specs.items():
        check_vrids(spec, other_stacks(project, stack))
    proxmox = {stack for stack, spec in specs.items() if spec.platform == "proxmox"}
    assert len(proxmox) >= 2, "the shipped stacks on platform proxmox are compared with each other"
    for stack in proxmox:
        assert set(other_stacks(project, stack)) == proxmox - {stack}, stack
        twin = stack_config(stack)[C]
        with pytest.raises(ConfigError, match=r"is also used by stack twin \(Pulumi\.twin\.yaml\)"):
            check_vrids(specs[stack], {"twin": twin})


def test_vms_get_their_ipv6_address_through_cloud_init():
    cfg = stack_config("prod")
    cfg[C]["gateway6"] = "2001:db8:10::1"
    for i, node in enumerate(cfg[C]["nodes"]):
        node["address6"] = f"2001:db8:10::{11 + i}/64"
    declared = run(cfg)
    vm = next(r for r in declared.by_type("proxmoxve:index/vmLegacy:VmLegacy") if r.inputs["name"] == "k3s-lb-02")
    assert vm.inputs["initialization"]["ipConfigs"][0]["ipv6"] == {"address": "2001:db8:10::12/64",
                                                                  "gateway": "2001:db8:10::1"}
    assert declared.outputs["vips"] == {"vip": ["172.18.10.100"]}
    assert declared.outputs["vipHolders"] == {"vip": "k3s-lb-01"}


def test_a_vrrp_password_cannot_protect_ipv6_vips():
    """VRRP for IPv6 exists only as version 3, which has no authentication (Debian 13's
    keepalived says so; 2.2 silently ignores it)."""
    cfg = aa()
    with pytest.raises(ConfigError) as err:
        build_cluster("lab-aa", cfg, tls_secrets(cfg, STATS_PW, "k33pal1v"))
    assert err.value.key == "haproxy-ha:vrrpPassword" and "no IPv6" in err.value.reason
