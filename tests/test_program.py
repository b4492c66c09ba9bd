"""The Pulumi program under mocks: what it declares for the prod stack, and what a change of config
changes (pulumi-command's triggers and the diffs of our own HostKey and NodeState decide update
or replace)."""

from __future__ import annotations

import copy

import pytest

from components.model.model import build_cluster
from tests.conftest import stack_config, tls_secrets
from tests.mocks import REMOTE_COMMAND, changes
from tests.program_support import API_TOKEN, STATS_PW, private_key, run

VM = "proxmoxve:index/vmLegacy:VmLegacy"
LAB_BASTION = {"host": "127.0.0.1", "port": 2222, "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBC bastion"}
IMAGE = "proxmoxve:download/file:File"


@pytest.fixture(scope="module")
def prod_run():
    return run()


def test_three_vms_one_per_host_with_the_seed_sizing(prod_run):
    vms = {r.inputs["name"]: r.inputs for r in prod_run.by_type(VM)}
    assert {n: v["nodeName"] for n, v in vms.items()} == {
        "k3s-lb-01": "r730", "k3s-lb-02": "r630", "k3s-lb-03": "r420",
    }
    for name, vm in vms.items():
        assert vm["cpu"]["cores"] == 1, name
        assert vm["memory"]["dedicated"] == 512, name
        # The agent's channel exists, but the provider must not wait for an IP report from an
        # agent that the image does not have yet (bpg waits up to 15 min by default).
        assert vm["agent"] == {"enabled": True, "type": "virtio", "waitForIp": {"disabled": True}}, name
        assert vm["onBoot"] is True and vm["tags"] == sorted(vm["tags"]), name
        disk = vm["disks"][0]
        assert disk["interface"] == "virtio0" and disk["datastoreId"] == "local-lvm" and disk["size"] == 4
        init = vm["initialization"]
        assert init["userAccount"]["keys"][0].startswith("ssh-ed25519 ")
        assert init["dns"]["servers"] == ["172.18.10.1"]
    expected = {"k3s-lb-01": "172.18.10.11/24", "k3s-lb-02": "172.18.10.12/24", "k3s-lb-03": "172.18.10.13/24"}
    for name, address in expected.items():
        ipv4 = vms[name]["initialization"]["ipConfigs"][0]["ipv4"]
        assert ipv4 == {"address": address, "gateway": "172.18.10.1"}, name


def test_the_image_is_downloaded_once_per_host_verified_by_its_checksum(prod_run):
    images = prod_run.by_type(IMAGE)
    assert sorted(i.inputs["nodeName"] for i in images) == ["r420", "r630", "r730"]
    for image in images:
        assert image.inputs["contentType"] == "import"
        assert image.inputs["datastoreId"] == "local"
        assert image.inputs["checksumAlgorithm"] == "sha256" and len(image.inputs["checksum"]) == 64
        assert "/v3.24/" in image.inputs["url"] and image.inputs["fileName"].endswith(".qcow2")
        # Taken over when it is already there (a download the provider dropped from the state).
        assert image.inputs["overwriteUnmanaged"] is True
    vm_by_host = {r.inputs["nodeName"]: r for r in prod_run.by_type(VM)}
    for image in images:
        # Each VM names its host's image as PVE does, and is made only once it is there.
        vm = vm_by_host[image.inputs["nodeName"]]
        assert vm.inputs["disks"][0]["importFrom"] == f"local:import/{image.inputs['fileName']}"
        assert image.urn in vm.dependencies


def test_apply_order_backups_first_holder_last_each_gated_on_the_previous(prod_run):
    urn = {r.name: r.urn for r in prod_run.resources}
    deps = {r.name: set(r.dependencies) for r in prod_run.resources}
    order = ["k3s-lb-03", "k3s-lb-02", "k3s-lb-01"]
    assert prod_run.outputs["rolloutOrder"] == order
    assert prod_run.outputs["vipHolder"] == "k3s-lb-01"
    for prev, node in zip(order, order[1:], strict=False):
        # Every apply step waits for every apply step of the previous node: an unchanged
        # dependency holds nothing up, so one gate alone would not order a change to the other.
        # (confirm-firewall follows its own node's apply-firewall, which is gated so.)
        steps = ("apply-firewall", "confirm-firewall", "apply-rsyslog", "apply-haproxy", "apply-keepalived")
        for step in (s for s in steps if s != "confirm-firewall"):
            for gate in steps:
                assert urn[f"haproxy-ha-{prev}-{gate}"] in deps[f"haproxy-ha-{node}-{step}"], (node, step, gate)
    assert not any("firewall" in d or "apply" in d for d in map(str, deps["haproxy-ha-k3s-lb-03-apply-firewall"]))
    first_haproxy = deps["haproxy-ha-k3s-lb-03-apply-haproxy"]
    assert {d.rsplit("::", 1)[1] for d in first_haproxy if "firewall" in d or "apply" in d} == {
        "haproxy-ha-k3s-lb-03-apply-firewall", "haproxy-ha-k3s-lb-03-confirm-firewall",
        "haproxy-ha-k3s-lb-03-apply-rsyslog",
    }, "the first node waits only for its own firewall and log socket"
    for node in order:
        # The firewall is confirmed over a new connection before anything else is applied.
        assert urn[f"haproxy-ha-{node}-apply-firewall"] in deps[f"haproxy-ha-{node}-confirm-firewall"]
        assert urn[f"haproxy-ha-{node}-confirm-firewall"] in deps[f"haproxy-ha-{node}-apply-rsyslog"]
        # rsyslog's socket exists before HAProxy logs; HAProxy serves before keepalived holds the VIP.
        assert urn[f"haproxy-ha-{node}-apply-rsyslog"] in deps[f"haproxy-ha-{node}-apply-haproxy"]
        assert urn[f"haproxy-ha-{node}-apply-haproxy"] in deps[f"haproxy-ha-{node}-apply-keepalived"]
        assert urn[f"haproxy-ha-{node}-file-haproxy-cfg"] in deps[f"haproxy-ha-{node}-apply-haproxy"]
        assert urn[f"haproxy-ha-{node}-install"] in deps[f"haproxy-ha-{node}-file-haproxy-cfg"]
        assert urn[f"haproxy-ha-{node}-bootstrap"] in deps[f"haproxy-ha-{node}-install"]


@pytest.mark.parametrize("vrrp_password", [None, "k33pal1v"])
def test_no_secret_in_any_command_string_and_secret_outputs_marked(vrrp_password):
    declared = run(vrrp_password=vrrp_password)
    cluster = build_cluster("prod", stack_config("prod"), tls_secrets(stack_config("prod"), STATS_PW, vrrp_password))
    secrets = [STATS_PW, cluster.stats_password_hash, API_TOKEN, private_key().strip().splitlines()[1]]
    if vrrp_password:
        secrets.append(vrrp_password)
    for r in declared.resources:
        for key in ("create", "update", "delete"):
            text = str(r.inputs.get(key, ""))
            for secret in secrets:
                assert secret not in text, f"{r.urn}: {key} holds a secret"
        if r.type == REMOTE_COMMAND:
            assert "connection" in r.secret_inputs, f"{r.urn}: the private key travels unmarked"
            stdin = str(r.inputs.get("stdin", ""))
            if any(s in stdin for s in secrets):
                assert "stdin" in r.secret_inputs, f"{r.urn}: secret stdin not marked secret"
                assert "stdin" in r.additional_secret_outputs, r.urn
    provider = next(r for r in declared.resources if r.type == "pulumi:providers:proxmoxve")
    assert "apiToken" in provider.secret_inputs
    haproxy_cfg = declared.by_name("haproxy-ha-k3s-lb-01-file-haproxy-cfg")
    assert "stdin" in haproxy_cfg.secret_inputs
    # The preview still shows the file, redacted.
    assert "user admin password <redacted>" in haproxy_cfg.inputs["create"]


def test_running_twice_declares_identical_inputs(prod_run):
    again = run()
    assert {r.urn: r.inputs for r in again.resources} == {r.urn: r.inputs for r in prod_run.resources}
    assert len(again.resources) == len(prod_run.resources)
    assert changes(prod_run, again) == {}


changed = changes


def test_a_backend_change_touches_only_haproxy_files_and_applies(prod_run):
    cfg = stack_config("prod")
    cfg["haproxy-ha:haproxy"]["backends"][1]["servers"][0]["address"] = "10.0.0.99:5001"
    diff = changed(prod_run, run(cfg))
    nodes = ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")
    assert diff == {
        **{f"haproxy-ha-{n}-file-haproxy-cfg": "update" for n in nodes},
        **{f"haproxy-ha-{n}-apply-haproxy": "update" for n in nodes},
        # What each node must hold changed: its NodeState reads it anew (nothing to restore).
        **{f"haproxy-ha-{n}-state": "update" for n in nodes},
    }


def test_a_priority_change_that_keeps_the_order_changes_nothing(prod_run):
    """The priorities give the failover order; keepalived runs that order at 254, 253, 189."""
    cfg = stack_config("prod")
    cfg["haproxy-ha:cluster"]["nodes"][1]["priority"] = 140
    assert changed(prod_run, run(cfg)) == {}


def test_moving_a_node_to_another_host_replaces_its_vm_and_reprovisions_it(prod_run):
    cfg = stack_config("prod")
    cfg["haproxy-ha:cluster"]["nodes"][2]["host"] = "r640"
    moved = run(cfg)
    diff = changed(prod_run, moved)
    # `nodeName` is a replace-on-change input of the provider's VmLegacy (its schema says so).
    assert moved.by_name("haproxy-ha-pve-k3s-lb-03").inputs["nodeName"] == "r640"
    assert diff["haproxy-ha-pve-image-r640"] == "create" and diff["haproxy-ha-pve-image-r420"] == "delete"
    # Every step of the node has the VM's identity (its id and MAC addresses) among its
    # triggers, so a new VM reruns each of them. The mocks cannot show a new identity (the VM
    # keeps its mocked id); tests/test_sim.py watches a VM made again under the real engine.
    vm = moved.by_name("haproxy-ha-pve-k3s-lb-03")
    for step in ("bootstrap", "install", "file-haproxy-cfg", "apply-haproxy", "apply-keepalived"):
        triggers = moved.by_name(f"haproxy-ha-k3s-lb-03-{step}").inputs["triggers"]
        assert any(str(t).startswith(f"{vm.name}-id/") for t in triggers), step
    assert not any(k.startswith(("haproxy-ha-k3s-lb-01", "haproxy-ha-k3s-lb-02")) for k in diff)


def test_five_nodes_without_code_changes():
    cfg = stack_config("prod")
    nodes = cfg["haproxy-ha:cluster"]["nodes"]
    hosts = ["r730", "r630", "r420", "r730", "r630"]
    cfg["haproxy-ha:cluster"]["nodes"] = [
        {"name": f"lb-{i + 1}", "host": hosts[i], "address": f"172.18.10.{11 + i}/24"} for i in range(5)
    ]
    assert len(nodes) == 3
    declared = run(cfg)
    assert len(declared.by_type(VM)) == 5
    assert declared.outputs["rolloutOrder"] == ["lb-5", "lb-4", "lb-3", "lb-2", "lb-1"]
    assert len([r for r in declared.steps() if r.name.endswith("apply-keepalived")]) == 5


def test_invalid_config_stops_before_any_resource():
    cfg = copy.deepcopy(stack_config("prod"))
    cfg["haproxy-ha:cluster"]["virtualRouterId"] = 999
    with pytest.raises(Exception, match=r"haproxy-ha:cluster\.virtualRouterId: 999"):
        run(cfg)


def test_missing_secret_names_the_key():
    from tests.mocks import declare
    from tests.program_support import SECRET_KEYS

    with pytest.raises(Exception, match=r"haproxy-ha:statsPassword: required"):
        declare("prod", stack_config("prod"), SECRET_KEYS)


def test_the_lab_stack_declares_namespace_nodes_instead_of_vms():
    cfg = stack_config("lab")
    cfg["haproxy-ha:sshPublicKey"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB lab@test"
    cfg["haproxy-ha:cluster"]["bastion"] = LAB_BASTION
    declared = run(cfg, stack="lab")
    assert not declared.by_type(VM) and not declared.by_type(IMAGE)
    local = {r.name: r.inputs for r in declared.steps() if not r.inputs.get("connection")}
    assert set(local) == {
        "haproxy-ha-lab-web-192.0.2.21", "haproxy-ha-lab-web-192.0.2.22",
        "haproxy-ha-lab-node-k3s-lb-01", "haproxy-ha-lab-node-k3s-lb-02", "haproxy-ha-lab-node-k3s-lb-03",
    }
    assert all(i["create"].startswith("python3 -m lab.labctl ") and i["delete"] for i in local.values())
    assert "192.0.2.11/24" in local["haproxy-ha-lab-node-k3s-lb-01"]["create"]
    bootstrap = declared.by_name("haproxy-ha-k3s-lb-01-bootstrap").inputs
    assert bootstrap["connection"]["host"] == "192.0.2.11"
    # SSH jumps through the stack's bastion (the lab's, in its client namespace), both keys pinned.
    assert bootstrap["connection"]["proxy"] == {
        "host": "127.0.0.1", "port": 2222, "user": "root", "hostKey": LAB_BASTION["hostKey"],
        "privateKey": private_key(), "dialErrorLimit": 30, "perDialTimeout": 10}
    assert bootstrap["addPreviousOutputInEnv"] is False
    conf = declared.by_name("haproxy-ha-k3s-lb-01-file-keepalived-conf").inputs["stdin"]
    assert "track_file" in conf and "chk_haproxy" in conf


def test_lab_stack_without_ssh_key_names_the_key():
    with pytest.raises(Exception, match=r"haproxy-ha:sshPublicKey: required on platform lab"):
        run(stack_config("lab"), stack="lab")


def test_an_unknown_key_in_the_project_namespace_is_rejected_by_name():
    cfg = stack_config("prod")
    cfg["haproxy-ha:clustr"] = {"vip": "1.2.3.4/24"}
    with pytest.raises(Exception, match=r"haproxy-ha:clustr: unknown key"):
        run(cfg)


def test_a_sha512_image_checksum_is_checked_as_sha512():
    cfg = stack_config("prod")
    url = "https://mirror.example.lan/alpine/v3.23/releases/cloud/nocloud_alpine-3.23.2-x86_64-bios-cloudinit-r0.qcow2"
    cfg["haproxy-ha:vm"] = {**cfg["haproxy-ha:vm"], "imageUrl": url, "imageChecksum": "ab" * 64}
    image = run(cfg).by_type(IMAGE)[0]
    assert (image.inputs["checksumAlgorithm"], image.inputs["checksum"]) == ("sha512", "ab" * 64)


def test_a_raw_line_haproxy_rejects_stops_the_preview_naming_its_key(monkeypatch):
    """Where `pulumi` runs with HAProxy installed (as here), the raw lines are judged before
    anything is declared: the first apply step on a node is not where the user learns it. This
    machine's HAProxy is the lab nodes' own: an error. For the VMs (a newer HAProxy than
    Debian 12's 2.6 here) the same words are a warning, and the nodes judge."""
    bad = ["http-request no-such-action"]
    lab = stack_config("lab")
    lab["haproxy-ha:haproxy"]["frontends"][0]["extra"] = bad
    with pytest.raises(Exception, match=r"haproxy-ha:haproxy\.frontends\[0\]\.extra\[0\]: HAProxy rejects this "
                                        r"raw line \(haproxy [\d.]+ -c here\)"):
        run(lab, stack="lab")
    prod = stack_config("prod")
    prod["haproxy-ha:haproxy"]["frontends"][0]["extra"] = bad
    warned = []
    monkeypatch.setattr("pulumi.log.warn", lambda message, *a, **k: warned.append(message))
    run(prod)
    assert any(w.startswith("haproxy-ha:haproxy.frontends[0].extra[0]: HAProxy rejects this raw line") for w in warned)


def test_with_a_heartbeat_network_each_vm_gets_a_second_nic_with_its_address_there():
    cfg = stack_config("prod")
    cluster = cfg["haproxy-ha:cluster"]
    cluster["heartbeat"] = {"interface": "eth1", "bridge": "vmbr1", "vlan": 30}
    for i, node in enumerate(cluster["nodes"]):
        node["heartbeatAddress"] = f"10.99.0.{11 + i}/24"
    vms = {r.inputs["name"]: r.inputs for r in run(cfg).by_type(VM)}
    for i, name in enumerate(("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")):
        nics = vms[name]["networkDevices"]
        assert [(n["bridge"], n.get("vlanId")) for n in nics] == [("vmbr0", None), ("vmbr1", 30)], name
        configs = vms[name]["initialization"]["ipConfigs"]
        assert configs[1] == {"ipv4": {"address": f"10.99.0.{11 + i}/24"}}, name
    # Without one, a VM has its one NIC, as before (no change for an existing stack).
    assert [len(r.inputs["networkDevices"]) for r in run().by_type(VM)] == [1, 1, 1]
