"""The production path under the real engine: a prod-shaped stack through the real Proxmox
provider (pulumi-resource-proxmoxve 8.3.0) against fakepve, whose VMs boot as lab nodes
(sim/). One `pulumi up` takes the empty PVE to a serving VIP; the next preview is empty."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import yaml

from components.config.errors import ConfigError
from components.config.proxmox import REQUIRED_PRIVILEGES, resolve
from components.config.schema import load_stack
from components.model.model import Secrets, build_cluster
from components.pve import preflight
from lab import labctl, tlsca
from lab.kit import probe, shape
from lab.stack import LabError
from sim.stack import Sim
from tests.lab_support import needs_lab

pytestmark = needs_lab
NODES = {"k3s-lb-01": "r730", "k3s-lb-02": "r630", "k3s-lb-03": "r420"}
# Privileges of the role that fakepve 0.5.0 never checks on the calls the program makes (PVE
# does: docs/proxmox.md, "The role, as measured").
NOT_CHECKED_BY_FAKEPVE = {"SDN.Use", "VM.Config.Cloudinit"}


def new_sim(mode: str) -> Sim:
    return Sim(mode, stack=f"t{mode[:4]}{uuid.uuid4().hex[:6]}", log=lambda line: None)


def torn_down(sim: Sim) -> None:
    """`down` leaves nothing: no namespaces, no PVE daemon, no state folder."""
    sim.down()
    assert not labctl.namespaces(sim.prefix)
    assert sim.daemon_pid() is None
    assert not sim.state_dir.exists()


def a_sim(mode: str):
    sim = new_sim(mode)
    try:
        yield sim
    finally:
        torn_down(sim)


@pytest.fixture(scope="module")
def cluster():
    """One PVE cluster: one endpoint for the three hosts."""
    yield from a_sim("cluster")


@pytest.fixture(scope="module")
def standalone():
    """Three standalone hosts: an endpoint and a token each."""
    yield from a_sim("standalone")


def client(sim: Sim, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", sim.ns("cl"), *argv], capture_output=True, text=True,
                          timeout=30).stdout


def serves(sim: Sim) -> None:
    """What a user checks: HTTP and HTTPS through the VIP, from the LAN."""
    vip = sim.outputs()["vip"]
    assert client(sim, "curl", "-s", "-m", "5", f"http://{vip}:5000/").startswith("backend 192.0.2.2")
    host = f"www.{tlsca.DOMAIN}"
    code = client(sim, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                  str(tlsca.ca_paths(sim.tls_dir)[0]), "--resolve", f"{host}:443:{vip}", f"https://{host}/")
    assert code == "200"


def booted_as_their_vms(sim: Sim) -> None:
    """Each VM is on its host, running, and its node answers SSH under the VM's name at the
    address cloud-init was given."""
    vms = sim.vms()
    assert {name: vm["node"] for name, vm in vms.items()} == NODES
    assert {vm["status"] for vm in vms.values()} == {"running"}
    nodes = sim.outputs()["nodes"]
    for name, vm in vms.items():
        assert f"ip={nodes[name]}/24" in vm["config"]["ipconfig0"]
        hostname = subprocess.run([*sim.ssh_argv(nodes[name]), "hostname"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        assert hostname == name


def test_one_up_takes_an_empty_pve_to_a_serving_vip(cluster):
    cluster.configure()
    assert cluster.vms() == {}
    cluster.up()
    booted_as_their_vms(cluster)
    serves(cluster)
    # The provider verified PVE's certificate: the stack sets no `insecure`.
    assert not any("insecure" in key for key in cluster.base_config)


def test_the_next_preview_is_empty(cluster):
    cluster.preview(expect_no_changes=True)  # refresh on, as Pulumi.yaml asks


def test_the_provider_refuses_a_pve_certificate_it_cannot_verify(cluster, tmp_path):
    other = tmp_path / "other-ca.pem"
    other.write_text(tlsca.ensure_ca(tmp_path / "other", "other")[0])
    saved = cluster.engine_env["SSL_CERT_FILE"]
    cluster.engine_env["SSL_CERT_FILE"] = str(other)
    try:
        with pytest.raises(LabError, match="certificate"):
            cluster.preview()
    finally:
        cluster.engine_env["SSL_CERT_FILE"] = saved


def declared(sim: Sim) -> list[str]:
    """The resources the state holds (a refresh, which `up` runs first, may rewrite their inputs)."""
    return sorted(r["urn"] for r in sim.resources())


def test_a_privilege_taken_from_the_token_is_named_before_anything_changes(cluster):
    before, vms = declared(cluster), cluster.vms()
    cluster.control("revoke", privilege="VM.Config.Memory")
    try:
        with pytest.raises(LabError, match=r"proxmoxve:apiToken: the token lacks VM.Config.Memory on /vms"):
            cluster.up()
    finally:
        cluster.control("restore_role")
    assert declared(cluster) == before and cluster.vms() == vms


@pytest.mark.parametrize("privilege", REQUIRED_PRIVILEGES)
def test_each_privilege_of_the_documented_role_is_checked(cluster, privilege, monkeypatch):
    """The preflight, against the sim's PVE API over verified TLS, with one privilege of the
    role taken from the token (its user keeps it: PVE intersects the two)."""
    monkeypatch.setenv("SSL_CERT_FILE", cluster.engine_env["SSL_CERT_FILE"])
    plain = {k: v for k, v in cluster.base_config.items() if k.startswith("haproxy-ha:")}
    spec = load_stack(cluster.base_config)
    bundles = tlsca.lab_certificates(cluster.tls_dir, cluster.stack, cluster.base_config)
    built = build_cluster(cluster.stack, plain, Secrets("x" * 8, tls_bundles=bundles))
    access = resolve(spec, {"endpoint": cluster.base_config["proxmoxve:endpoint"]}, cluster.apis[0].token, {})
    preflight.check(built, access)  # the whole role: nothing to say
    cluster.control("revoke", privilege=privilege)
    try:
        with pytest.raises(ConfigError, match=f"the token lacks {privilege} on /"):
            preflight.check(built, access)
    finally:
        cluster.control("restore_role")


def test_a_vm_deleted_behind_pulumis_back_is_recreated_and_provisioned(cluster):
    node_ns = cluster.node_ns(cluster.outputs()["nodes"]["k3s-lb-02"])
    cluster.control("vm", name="k3s-lb-02", action="delete")
    probe.wait_for(lambda: node_ns not in labctl.namespaces(cluster.prefix), 15)
    # The refresh finds it gone: the VM is created again, and every step of its node runs again.
    ops = cluster.preview().ops()
    assert ops["haproxy-ha-pve-k3s-lb-02"] == "create"
    assert ops["haproxy-ha-k3s-lb-02-bootstrap"] in ("create", "replace", "create-replacement")
    cluster.up()
    booted_as_their_vms(cluster)
    serves(cluster)
    cluster.preview(expect_no_changes=True)


def power_cycles(sim: Sim) -> list[tuple[str, str]]:
    """What the sim's PVE did to the VMs' nodes, in order: (node, "halted" | "gone" | "up")."""
    said = {"stopped:": "halted", "deleted:": "gone", "up": "up"}
    events = []
    for line in (sim.pve_dir / "daemon.log").read_text().splitlines():
        words = line.split()
        if len(words) > 4 and words[1] == "VM" and words[4] in said:
            events.append((words[3].strip("()"), said[words[4]]))
    return events


def test_a_memory_change_reboots_one_vm_at_a_time_backups_first_under_load(cluster):
    out = cluster.outputs()
    vm = cluster.base_config["haproxy-ha:vm"]
    url = f"http://{out['vip']}:5000/"
    before = len(power_cycles(cluster))
    with probe.Load(cluster, url, workers=2, interval=0.01, timeout=2) as load:
        cluster.up({"haproxy-ha:vm": {**vm, "memoryMiB": 768}})
        said = load.stop()
    assert {v["memory"] for v in cluster.vms().values()} == {"768"}
    # Each VM was shut down and started once (the provider's way to apply new memory), in
    # rolling order (the VIP holder last), each only once the one before was up again (the
    # `ready` gate): never two nodes down at once.
    cycles = power_cycles(cluster)[before:]
    assert cycles == [(name, what) for name in out["rolloutOrder"] for what in ("halted", "up")]
    # The only outages are the failover the holder's reboot asks for, and its return (preempt).
    assert said["ok"] > 0 and len(said["outages"]) <= 2, said
    booted_as_their_vms(cluster)
    serves(cluster)
    cluster.preview(config={"haproxy-ha:vm": {**vm, "memoryMiB": 768}}, expect_no_changes=True)


def test_a_new_image_replaces_one_vm_at_a_time_each_serving_before_the_next(cluster):
    out = cluster.outputs()
    vm = cluster.base_config["haproxy-ha:vm"]
    # (the size the memory test left: only the image changes here)
    image = {**vm, "memoryMiB": 768, "imageUrl": "https://dl-cdn.alpinelinux.org/alpine/v3.23/releases/cloud/"
                               "nocloud_alpine-3.23.2-x86_64-bios-cloudinit-r0.qcow2", "imageChecksum": "cd" * 64}
    before = len(power_cycles(cluster))
    with probe.Load(cluster, f"http://{out['vip']}:5000/", workers=2, interval=0.01, timeout=2) as load:
        cluster.up({"haproxy-ha:vm": image})
        said = load.stop()
    # Each VM goes (stopped, deleted), its new one comes up, and only then the next goes.
    cycles = power_cycles(cluster)[before:]
    assert cycles == [(name, what) for name in out["rolloutOrder"] for what in ("halted", "gone", "up")]
    assert all("alpine-3.23.2" in v["config"]["virtio0"] or v["config"]["virtio0"] for v in cluster.vms().values())
    new = cluster.outputs()
    assert all(new["hostKeys"][n] != out["hostKeys"][n] for n in out["hostKeys"])  # new machines, keys recorded
    assert said["ok"] > 0 and len(said["outages"]) <= 2, said
    booted_as_their_vms(cluster)
    serves(cluster)
    cluster.preview(config={"haproxy-ha:vm": image}, expect_no_changes=True)


def current_vm(sim: Sim) -> dict:
    """haproxy-ha:vm as the last `up` had it (the tests before may have changed it)."""
    return yaml.safe_load(sim.config_file.read_text())["config"]["haproxy-ha:vm"]


FAULTS = [
    # PVE cannot start the VM (a QEMU that fails): the start task ends in error.
    ("start task error", lambda sim: sim.control("task_error", name="k3s-lb-02", message="start failed: QEMU exited"),
     lambda sim: sim.control("clear_task_error", name="k3s-lb-02"), "start failed: QEMU exited"),
    # A backup holds the VM's lock: PVE refuses to change it.
    ("locked by a backup", lambda sim: sim.control("lock", name="k3s-lb-02", lock="backup"),
     lambda sim: sim.control("lock", name="k3s-lb-02", lock=None), "locked"),
]


@pytest.mark.parametrize("fault, cause, clear, said", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_pve_fault_names_the_node_leaves_the_others_and_the_next_up_finishes(cluster, fault, cause, clear, said):
    vm = {**current_vm(cluster), "memoryMiB": 640 if fault == "start task error" else 512}
    before = {name: v["memory"] for name, v in cluster.vms().items()}
    cause(cluster)
    try:
        with pytest.raises(LabError, match=f"(?s)haproxy-ha-pve-k3s-lb-02.*{said}"):
            cluster.up({"haproxy-ha:vm": vm})
        now = {name: v["memory"] for name, v in cluster.vms().items()}
        # Rolling order k3s-lb-03, k3s-lb-02, k3s-lb-01: the one before has changed, the holder
        # after it was left alone, and the VIP still serves.
        assert now["k3s-lb-03"] == str(vm["memoryMiB"]) and now["k3s-lb-01"] == before["k3s-lb-01"]
        serves(cluster)
    finally:
        clear(cluster)
    cluster.up({"haproxy-ha:vm": vm})
    assert {v["memory"] for v in cluster.vms().values()} == {str(vm["memoryMiB"])}
    serves(cluster)


def test_slow_tasks_and_a_slow_api_still_converge(cluster):
    """PVE's tasks at their real pace (a download 5 s, each task's own seconds) and 0.3 s added
    to every API answer: the change still rolls, and the next preview is empty."""
    vm = {**current_vm(cluster), "memoryMiB": 896}
    cluster.control("time_scale", value=1.0)
    cluster.control("latency", seconds=0.3)
    try:
        cluster.up({"haproxy-ha:vm": vm})
    finally:
        cluster.control("latency", seconds=0.0)
        cluster.control("time_scale", value=0.05)
    assert {v["memory"] for v in cluster.vms().values()} == {"896"}
    serves(cluster)
    cluster.preview(config={"haproxy-ha:vm": vm}, expect_no_changes=True)


def test_a_host_gone_offline_after_its_vm_exists_is_named_and_the_next_up_recovers(cluster):
    """The refresh before the program meets it first (the preflight never runs): the provider's
    error names the node's VM and PVE's words, and nothing is touched. The same failed refresh
    drops the host's image download from the state (the provider does so on any failed read):
    once the host is back, `up` takes the file over again, and no VM is replaced."""
    vm = current_vm(cluster)
    before = cluster.vms()
    cluster.control("online", host="r420", online=False)
    try:
        with pytest.raises(LabError, match=r"(?s)haproxy-ha-pve-k3s-lb-03.*595.*No route to host"):
            cluster.up({"haproxy-ha:vm": {**vm, "memoryMiB": vm["memoryMiB"] + 128}})
    finally:
        cluster.control("online", host="r420", online=True)
    assert cluster.vms() == before
    serves(cluster)
    ops = cluster.preview(config={"haproxy-ha:vm": vm}).ops()
    assert ops == {"haproxy-ha-pve-image-r420": "create"}
    cluster.up({"haproxy-ha:vm": vm})
    assert cluster.vms() == before
    cluster.preview(config={"haproxy-ha:vm": vm}, expect_no_changes=True)


def halts(sim: Sim, since: int) -> dict[str, str]:
    """What each node held when its VM was stopped (the sim's PVE looks before it halts it)."""
    lines = (sim.pve_dir / "daemon.log").read_text().splitlines()[since:]
    return {line.split()[3].strip("()"): line.split("holding ", 1)[1]
            for line in lines if ": its node halts, holding " in line}


def test_a_node_added_then_removed_hands_the_vip_on_before_its_vm_goes(cluster):
    """Nodes 3 to 4 to 3, without preempt, the leaving node holding the VIP when it goes (after
    failovers, as happens without preempt): it hands the VIP on before its VM is stopped."""
    config = yaml.safe_load(cluster.config_file.read_text())["config"]
    spec, vm = config["haproxy-ha:cluster"], config["haproxy-ha:vm"]
    fourth = {"name": "k3s-lb-04", "host": "r730", "address": "192.0.2.14/24", "priority": 50}
    four = {**spec, "preempt": False, "nodes": [*spec["nodes"], fourth]}
    cluster.up({"haproxy-ha:cluster": four, "haproxy-ha:vm": vm})
    assert {name: v["node"] for name, v in cluster.vms().items()} == {**NODES, "k3s-lb-04": "r730"}
    serves(cluster)
    out = cluster.outputs()
    # Without preempt, the VIP stays where the failovers left it: on the fourth node.
    shape.hand_vip_to(cluster, "k3s-lb-04")

    since = len((cluster.pve_dir / "daemon.log").read_text().splitlines())
    with probe.Load(cluster, f"http://{out['vip']}:5000/", workers=2, interval=0.01, timeout=2) as load:
        cluster.up({"haproxy-ha:cluster": {**spec, "preempt": False}, "haproxy-ha:vm": vm})
        said = load.stop()
    # It let go before its VM was stopped: the VIP moved once, by its own priority-0 advert.
    assert halts(cluster, since) == {"k3s-lb-04": "no VIP"}
    assert "k3s-lb-04" not in cluster.vms()
    assert said["ok"] > 0 and len(said["outages"]) <= 1, said
    serves(cluster)
    cluster.up({"haproxy-ha:cluster": spec, "haproxy-ha:vm": vm})
    booted_as_their_vms(cluster)
    cluster.preview(config={"haproxy-ha:vm": vm}, expect_no_changes=True)


def test_the_role_is_what_pve_checked_over_the_stacks_life(cluster):
    """Every privilege PVE checked for the token over this module's life of the stack (the first
    `up`, refreshes, new memory, a new image, a node added and removed, the faults) and its
    `pulumi destroy`: each is in the documented role, and each of the role was asked for, but
    those fakepve does not check (docs/proxmox.md says where PVE does)."""
    cluster.pulumi("destroy", "--yes", "--skip-preview")
    assert cluster.vms() == {}
    checked = cluster.control("checked")
    granted, refused = checked["granted"], checked["refused"]
    # Each privilege a call needed is in the role, and each of the role was needed.
    assert set(granted) - set(REQUIRED_PRIVILEGES) == set(), json.dumps(checked, indent=1)
    assert set(REQUIRED_PRIVILEGES) - set(granted) == NOT_CHECKED_BY_FAKEPVE, json.dumps(checked, indent=1)
    # Outside the role, PVE asked only for Sys.Audit on /, which the token lacks and nothing needed.
    assert set(refused) - set(REQUIRED_PRIVILEGES) == {"Sys.Audit"}, json.dumps(checked, indent=1)


PRECONDITIONS = [
    ("storage_content", {"storage": "local", "content": "iso,vztmpl,backup"},
     {"storage": "local", "content": "iso,vztmpl,backup,import"},
     r"haproxy-ha:vm.imageDatastore: storage 'local' on host r\d+ does not take content type 'import'"),
    ("bridge", {"host": "r630", "bridge": "vmbr0", "present": False},
     {"host": "r630", "bridge": "vmbr0", "present": True},
     r"haproxy-ha:vm.bridge: host r630 has no bridge 'vmbr0'"),
    ("online", {"host": "r420", "online": False}, {"host": "r420", "online": True},
     r"haproxy-ha:cluster.nodes\[2\].host: host r420 is offline"),
]


@pytest.mark.parametrize("op, fault, undo, said", PRECONDITIONS, ids=[p[0] for p in PRECONDITIONS])
def test_a_missing_precondition_is_named_and_nothing_is_made(standalone, op, fault, undo, said):
    standalone.configure()
    standalone.control(op, **fault)
    try:
        with pytest.raises(LabError, match=said):
            standalone.up()
    finally:
        standalone.control(op, **undo)
    assert standalone.vms() == {}
    assert not any(vols for api in standalone.control("volumes").values() for vols in api.values())


def test_a_vm_id_in_use_is_named_and_nothing_is_made(standalone):
    standalone.configure()
    standalone.control("add_vm", host="r630", vmid=201, name="someone-elses")
    try:
        with pytest.raises(LabError, match=r"haproxy-ha:vm.vmIdBase: VM id 201 \(for k3s-lb-02\) is taken on host "
                                           r"r630 by 'someone-elses'"):
            standalone.up({"haproxy-ha:vm": {**standalone.base_config["haproxy-ha:vm"], "vmIdBase": 200}})
    finally:
        standalone.control("vm", name="someone-elses", action="delete")
    assert standalone.vms() == {}


def test_standalone_hosts_each_with_their_own_api_serve_too(standalone):
    assert len({a.port for a in standalone.apis}) == 3
    standalone.up()
    booted_as_their_vms(standalone)
    serves(standalone)
    standalone.preview(expect_no_changes=True)
