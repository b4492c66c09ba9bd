"""The model: every validation rule names the key, derived values are right."""

from __future__ import annotations

import pytest

from components.config.errors import ConfigError
from components.model.model import Secrets, build_cluster
from tests.conftest import stack_config

C, H = "haproxy-ha:cluster", "haproxy-ha:haproxy"
SECRETS = Secrets("correct horse battery")


def nodes(cfg):
    return cfg[C]["nodes"]


def fe(cfg, i):
    return cfg[H]["frontends"][i]


def mutate(cfg, path, value):
    """Set cfg[a][b]...[z] = value, path given as a tuple."""
    target = cfg
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


BAD = [
    # (description, path to set, value, key named in the error, words in the reason)
    ("unknown cluster key", (C, "vrid"), 5, f"{C}.vrid", "unknown key"),
    ("unknown node key", (C, "nodes", 1, "prio"), 5, f"{C}.nodes[1].prio", "unknown key"),
    ("unknown top key", ("haproxy-ha:clutser",), {}, "haproxy-ha:clutser", "unknown key"),
    ("bastion without its host key", (C, "bastion"), {"host": "bastion.example.lan"}, f"{C}.bastion.hostKey",
     "required"),
    ("bastion host key not a key", (C, "bastion"), {"host": "b.example.lan", "hostKey": "ssh-ed25519"},
     f"{C}.bastion.hostKey", "one line `<type> <base64> [comment]`"),
    ("unknown backend key", (H, "backends", 0, "servrs"), [], f"{H}.backends[0].servrs", "unknown key"),
    ("duplicate node name", (C, "nodes", 2, "name"), "k3s-lb-01", f"{C}.nodes[2].name", "duplicates"),
    ("duplicate address", (C, "nodes", 1, "address"), "172.18.10.11/24", f"{C}.nodes[1].address", "duplicates"),
    ("duplicate priority", (C, "nodes", 2, "priority"), 150, f"{C}.nodes[2].priority", "duplicates"),
    ("priority 255", (C, "nodes", 0, "priority"), 255, f"{C}.nodes[0].priority", "254"),
    ("priority 0", (C, "nodes", 2, "priority"), 0, f"{C}.nodes[2].priority", "1"),
    ("VRID 0", (C, "virtualRouterId"), 0, f"{C}.virtualRouterId", "1"),
    ("VRID 256", (C, "virtualRouterId"), 256, f"{C}.virtualRouterId", "255"),
    ("VIP outside subnet", (C, "vip"), "10.9.9.9/24", f"{C}.vip", "not in the nodes' subnet"),
    ("VIP is a node", (C, "vip"), "172.18.10.12/24", f"{C}.vip", "node address"),
    ("one node", (C, "nodes"), "ONE", f"{C}.nodes", "at least 2"),
    ("frontend port = stats port", (H, "frontends", 1, "bind"), "*:8404", f"{H}.frontends[1].bind", "stats.port"),
    ("two frontends one port", (H, "frontends", 2, "bind"), "*:5000", f"{H}.frontends[2].bind", "frontends[0].bind"),
    ("unknown default backend", (H, "frontends", 0, "defaultBackend"), "nope", f"{H}.frontends[0].defaultBackend", "unknown backend"),
    ("route to unknown backend", (H, "frontends", 0, "routes", 0, "backend"), "nope", f"{H}.frontends[0].routes[0].backend", "unknown backend"),
    ("server without port", (H, "backends", 1, "servers", 0, "address"), "10.0.0.21", f"{H}.backends[1].servers[0].address", "host:port"),
    ("server port 0", (H, "backends", 1, "servers", 0, "address"), "10.0.0.21:0", f"{H}.backends[1].servers[0].address", "port"),
    ("server port too big", (H, "backends", 1, "servers", 0, "address"), "10.0.0.21:70000", f"{H}.backends[1].servers[0].address", "port"),
    ("server bad IP", (H, "backends", 1, "servers", 0, "address"), "10.0.0.300:80", f"{H}.backends[1].servers[0].address", "10.0.0.300"),
    ("server with space", (H, "backends", 1, "servers", 0, "address"), "10.0.0.1:80 backup", f"{H}.backends[1].servers[0].address", "host:port"),
    ("name with space", (H, "backends", 1, "name"), "my app", f"{H}.backends[1].name", "not allowed"),
    ("name with quote", (H, "frontends", 2, "name"), 'my"sql', f"{H}.frontends[2].name", "not allowed"),
    ("name with newline", (C, "nodes", 0, "name"), "lb\nx", f"{C}.nodes[0].name", "not allowed"),
    ("name with semicolon", (H, "backends", 0, "servers", 0, "name"), "a;reboot", f"{H}.backends[0].servers[0].name", "not allowed"),
    ("name with dollar", (H, "stats", "user"), "$USER", f"{H}.stats.user", "not allowed"),
    ("path with space", (H, "frontends", 0, "routes", 0, "pathBeg", 0), "/a b", f"{H}.frontends[0].routes[0].pathBeg[0]", "not allowed"),
    ("interface with slash", (C, "interface"), "eth0/1", f"{C}.interface", "not allowed"),
    ("routes on tcp frontend", (H, "frontends", 2, "routes"), [{"backend": "mysql", "pathBeg": ["/x"]}], f"{H}.frontends[2].routes[0]", "mode: http"),
    ("sni route on http frontend", (H, "frontends", 0, "routes", 0, "sni"), ["a.example.com"], f"{H}.frontends[0].routes[0].sni", "tcp mode"),
    ("host with underscore", (H, "frontends", 0, "routes", 0, "hosts"), ["a_b.example.com"], f"{H}.frontends[0].routes[0].hosts[0]", "wildcard"),
    ("host wildcard in the middle", (H, "frontends", 0, "routes", 0, "hosts"), ["a.*.com"], f"{H}.frontends[0].routes[0].hosts[0]", "wildcard"),
    ("timeout without unit", (H, "frontends", 0, "timeouts"), {"client": "30"}, f"{H}.frontends[0].timeouts.client", "unit"),
    ("server timeout on a frontend", (H, "frontends", 0, "timeouts"), {"server": "30s"}, f"{H}.frontends[0].timeouts.server", "backends[].timeouts"),
    ("http timeout on tcp frontend", (H, "frontends", 2, "timeouts"), {"httpRequest": "5s"}, f"{H}.frontends[2].timeouts.httpRequest", "mode tcp"),
    ("proxy version 3", (H, "backends", 1, "sendProxy"), "v3", f"{H}.backends[1].sendProxy", "v1"),
    ("verify without ca", (H, "backends", 1, "tls"), {"verify": "required"}, f"{H}.backends[1].tls.ca", "CA"),
    ("unknown ca", (H, "backends", 1, "tls"), {"ca": "nope"}, f"{H}.backends[1].tls.ca", "caBundles"),
    ("sni from request in tcp", (H, "backends", 2, "tls"), {"verify": "none", "sni": "from request"}, f"{H}.backends[2].tls.sni", "mode: http"),
    ("check host without path", (H, "backends", 1, "healthCheck"), {"host": "a.example.com"}, f"{H}.backends[1].healthCheck.host", "path"),
    ("extra line with newline", (H, "backends", 1, "extra"), ["option forwardfor\nglobal"], f"{H}.backends[1].extra[0]", "one line"),
    ("extra line opens a section", (H, "backends", 1, "extra"), ["defaults"], f"{H}.backends[1].extra[0]", "new section"),
    ("extra bind", (H, "frontends", 0, "extra"), ["bind *:9999"], f"{H}.frontends[0].extra[0]", "frontend"),
    ("extra log", (H, "frontends", 0, "extra"), ["log 10.0.0.1 local0"], f"{H}.frontends[0].extra[0]", "logging"),
    ("extra no log", (H, "backends", 0, "extra"), ["no log"], f"{H}.backends[0].extra[0]", "`no log` cannot go in extra"),
    ("extra section global", (H, "extraSections"), ["global\n    maxconn 1"], f"{H}.extraSections[0]", "one of userlist"),
    ("extra section smuggles defaults", (H, "extraSections"), ["cache c\n    total-max-size 4\ndefaults"], f"{H}.extraSections[0]", "line 3"),
    ("extra section stats users", (H, "extraSections"), ["userlist stats_users\n    user a insecure-password b"], f"{H}.extraSections[0]", "ours"),
    ("modern with TLS 1.2", (H, "frontends", 0, "tls"), {"certificates": ["www"], "profile": "modern", "minVersion": "TLSv1.2"}, f"{H}.frontends[0].tls.minVersion", "TLS 1.3"),
    ("mode mismatch", (H, "frontends", 2, "defaultBackend"), "app", f"{H}.frontends[2].defaultBackend", "mode"),
    ("gateway outside subnet", (C, "gateway"), "10.0.0.1", f"{C}.gateway", "subnet"),
    ("node in another subnet", (C, "nodes", 2, "address"), "172.18.11.13/24", f"{C}.nodes[2].address", "subnet"),
    ("priorities out of order", (C, "nodes", 1, "priority"), 220, f"{C}.nodes[1].priority", "failover order"),
    ("priority missing on one node", (C, "nodes", 1, "priority"), None, f"{C}.nodes[1].priority", "every node or on none"),
    ("bad mode", (H, "frontends", 0, "mode"), "udp", f"{H}.frontends[0].mode", "http"),
    ("missing cluster", ("haproxy-ha:cluster",), None, "haproxy-ha:cluster", "required"),
    ("bad ssh key", ("haproxy-ha:sshPublicKey",), "AAAA; rm -rf /", "haproxy-ha:sshPublicKey", "not allowed"),
    ("bad platform", ("haproxy-ha:platform",), "docker", "haproxy-ha:platform", "proxmox"),
    ("admin network with host bits", (C, "adminNetworks"), ["172.18.10.5/24"], f"{C}.adminNetworks[0]", "host bits set: the network is 172.18.10.0/24"),
    ("admin network a name", (C, "adminNetworks"), ["bastion.example.lan"], f"{C}.adminNetworks[0]", "not an IPv4 or IPv6 network"),
    ("no admin network", (C, "adminNetworks"), [], f"{C}.adminNetworks", "at least 1"),
    ("frontend source /33", (H, "frontends", 2, "sources"), ["10.0.0.0/33"], f"{H}.frontends[2].sources[0]", "not an IPv4 or IPv6 network"),
    ("custom image without checksum", ("haproxy-ha:vm", "imageUrl"), "https://example.org/a.qcow2", "haproxy-ha:vm.imageChecksum", "sha512"),
]


@pytest.mark.parametrize("what,path,value,key,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_the_key(prod, what, path, value, key, reason):
    if value == "ONE":
        value = nodes(prod)[:1]
    if value is None and len(path) == 1:
        del prod[path[0]]
    elif value is None:
        target = prod
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    else:
        mutate(prod, path, value)
    with pytest.raises(ConfigError) as err:
        build_cluster("prod", prod, SECRETS)
    message = str(err.value)
    assert message.startswith(key + ":"), message
    assert reason in message, message
    assert "\n" not in message.strip(), "one clear line"


def test_nopreempt_with_forced_master(prod):
    prod[C]["preempt"] = False
    nodes(prod)[0]["state"] = "MASTER"
    with pytest.raises(ConfigError, match=r"^haproxy-ha:cluster\.nodes\[0\]\.state: MASTER cannot be combined"):
        build_cluster("prod", prod, SECRETS)


def test_vrrp_password_over_8_characters(prod):
    with pytest.raises(ConfigError, match=r"^haproxy-ha:vrrpPassword: is 9 characters.*at most 8"):
        build_cluster("prod", prod, Secrets("correct horse", vrrp_password="123456789"))


def test_short_stats_password(prod):
    with pytest.raises(ConfigError, match=r"^haproxy-ha:statsPassword: must be at least 8"):
        build_cluster("prod", prod, Secrets("short"))


def test_vrrp_password_with_subsecond_adverts(prod):
    prod[C]["advertInt"] = 0.5
    with pytest.raises(ConfigError, match=r"^haproxy-ha:cluster\.advertInt: .*VRRPv3"):
        build_cluster("prod", prod, Secrets("correct horse", vrrp_password="abc12345"))


def test_secrets_never_in_repr():
    assert "horse" not in repr(Secrets("correct horse", "pw"))


# --- Derived values ------------------------------------------------------------------------


def test_prod_cluster_derives_the_seed_roles(prod):
    cluster = build_cluster("prod", prod, SECRETS)
    assert [(n.name, n.priority, n.state) for n in cluster.nodes] == [
        ("k3s-lb-01", 200, "MASTER"), ("k3s-lb-02", 150, "BACKUP"), ("k3s-lb-03", 100, "BACKUP"),
    ]
    assert [n.name for n in cluster.rollout_order] == ["k3s-lb-03", "k3s-lb-02", "k3s-lb-01"]
    assert cluster.vip_holder.name == "k3s-lb-01"
    assert cluster.listen_ports == (80, 3306, 5000, 8404)
    assert cluster.vrrp_version == 3 and cluster.advert_int_text == "0.05"


def test_priorities_derived_from_order_when_absent(prod):
    for n in nodes(prod):
        del n["priority"]
    cluster = build_cluster("prod", prod, SECRETS)
    assert [n.priority for n in cluster.nodes] == [200, 150, 100]


def test_nopreempt_starts_all_backup_and_faults_on_failure(prod):
    prod[C]["preempt"] = False
    cluster = build_cluster("prod", prod, SECRETS)
    assert {n.state for n in cluster.nodes} == {"BACKUP"}


def test_unicast_peers_are_the_other_nodes(prod):
    prod[C]["unicast"] = True
    cluster = build_cluster("prod", prod, SECRETS)
    assert cluster.nodes[1].peers == ("172.18.10.11", "172.18.10.13")


def test_stats_hash_is_deterministic_sha512_and_changes_with_the_password(prod):
    a = build_cluster("prod", prod, SECRETS).stats_password_hash
    b = build_cluster("prod", prod, SECRETS).stats_password_hash
    c = build_cluster("prod", prod, Secrets("another password")).stats_password_hash
    assert a == b and a.startswith("$6$") and a != c


def test_vrrp_password_selects_vrrpv2_with_whole_second_adverts(prod):
    cluster = build_cluster("prod", prod, Secrets("correct horse", vrrp_password="s3cr3t"))
    assert cluster.vrrp_version == 2 and cluster.advert_int_text == "1"


def test_a_release_past_its_end_of_support_is_a_warning_naming_the_date():
    import datetime as dt

    from components.config.alpine import END_OF_SUPPORT, IMAGE_URL, support_warning

    old = "https://dl-cdn.alpinelinux.org/alpine/v3.21/releases/cloud/nocloud_alpine-3.21.7-x86_64-bios-cloudinit-r0.qcow2"
    said = support_warning(old, dt.date(2026, 12, 5))
    assert said is not None and "Alpine 3.21 reached its end of support on 2026-11-01" in said
    assert "3.22, 3.23, 3.24" in said
    assert support_warning(old, dt.date(2026, 10, 31)) is None
    # The default is supported today, and every release the table knows has a date.
    assert support_warning(IMAGE_URL) is None
    assert support_warning("https://mirror.example.lan/images/custom.qcow2") is None
    assert all(isinstance(d, dt.date) for d in END_OF_SUPPORT.values())


def test_the_stack_warns_when_its_image_is_past_support():
    cfg = stack_config("prod")
    old = "https://dl-cdn.alpinelinux.org/alpine/v3.21/releases/cloud/nocloud_alpine-3.21.7-x86_64-bios-cloudinit-r0.qcow2"
    cfg["haproxy-ha:vm"] = {**cfg["haproxy-ha:vm"], "imageUrl": old, "imageChecksum": "ab" * 64}
    cluster = build_cluster("prod", {k: v for k, v in cfg.items() if k.startswith("haproxy-ha:")}, Secrets("x" * 8))
    assert any("end of support on 2026-11-01" in w for w in cluster.warnings)


def test_without_admin_networks_the_admin_ports_are_open_to_the_nodes_subnet_with_a_warning(prod):
    from components.files.render import render_node
    del prod[C]["adminNetworks"]
    cluster = build_cluster("prod", prod, SECRETS)
    assert any(w.startswith(f"{C}.adminNetworks is not set: SSH and the stats page stay open to 172.18.10.0/24")
               for w in cluster.warnings), cluster.warnings
    ruleset = next(f for f in render_node(cluster, cluster.nodes[0]) if f.name == "nftables.nft").text
    assert "elements = { 172.18.10.0/24 }" in ruleset
    assert "ip saddr @admin4 tcp dport { 22, 8404 } accept" in ruleset


def test_the_firewall_opens_what_the_config_says_and_takes_vrrp_from_the_peers_only(prod):
    from components.files.render import render_node
    cluster = build_cluster("prod", prod, SECRETS)
    assert not any("adminNetworks" in w for w in cluster.warnings)
    ruleset = next(f for f in render_node(cluster, cluster.node("k3s-lb-02")) if f.name == "nftables.nft").text
    assert "policy drop;" in ruleset
    assert "elements = { 172.18.10.5/32, 172.18.20.0/24 }" in ruleset  # cluster.adminNetworks
    assert "elements = { 172.18.10.11, 172.18.10.13 }" in ruleset  # the peers of k3s-lb-02, not itself
    assert 'iifname "eth0" ip protocol 112 ip saddr @peers4 ip ttl 255 accept' in ruleset
    assert "        tcp dport 5000 accept" in ruleset  # everyone
    assert "ip saddr @frontend2_4 tcp dport 3306 accept" in ruleset  # mysql: its sources only
    assert "elements = { 10.0.0.0/24 }" in ruleset
    assert "tcp dport 3306 accept" not in ruleset.replace("@frontend2_4 tcp dport 3306", "")


def test_ipv6_vrrp_is_taken_from_link_local_senders_by_multicast_and_from_the_peers_by_unicast():
    from components.files.render import render_node
    aa = stack_config("lab-aa")
    ruleset = next(f for f in render_node(build_cluster("lab-aa", aa, SECRETS), build_cluster(
        "lab-aa", aa, SECRETS).nodes[0]) if f.name == "nftables.nft").text
    assert "meta l4proto 112 ip6 saddr fe80::/10 ip6 hoplimit 255 accept" in ruleset
    aa[C]["unicast"] = True
    cluster = build_cluster("lab-aa", aa, SECRETS)
    ruleset = next(f for f in render_node(cluster, cluster.nodes[0]) if f.name == "nftables.nft").text
    assert "fe80::/10" not in ruleset
    assert "elements = { 2001:db8:0:1::12, 2001:db8:0:1::13 }" in ruleset
    assert "meta l4proto 112 ip6 saddr @peers6 ip6 hoplimit 255 accept" in ruleset


def heartbeat(cfg, *addresses):
    cfg[C]["heartbeat"] = {"interface": "eth1", "bridge": "vmbr1"}
    for node, address in zip(nodes(cfg), addresses, strict=False):
        node["heartbeatAddress"] = address
    return cfg


@pytest.mark.parametrize("addresses,key,reason", [
    (("10.99.0.11/24", "10.99.0.12/24"), f"{C}.nodes[2].heartbeatAddress", "required on every node"),
    (("10.99.0.11/24", "10.99.1.12/24", "10.99.0.13/24"), f"{C}.nodes[1].heartbeatAddress", "heartbeat subnet"),
    (("172.18.10.21/24", "172.18.10.22/24", "172.18.10.23/24"), f"{C}.nodes[0].heartbeatAddress",
     "overlaps the clients' subnet"),
    (("10.99.0.11/24", "10.99.0.11/24", "10.99.0.13/24"), f"{C}.nodes[1].heartbeatAddress", "duplicates"),
])
def test_heartbeat_addresses_are_checked_naming_the_node(prod, addresses, key, reason):
    with pytest.raises(ConfigError) as err:
        build_cluster("prod", heartbeat(prod, *addresses), SECRETS)
    assert str(err.value).startswith(key + ":") and reason in str(err.value), err.value


def test_a_heartbeat_address_without_the_heartbeat_network_and_the_clients_nic_are_refused(prod):
    nodes(prod)[1]["heartbeatAddress"] = "10.99.0.12/24"
    with pytest.raises(ConfigError, match=rf"^{C}\.nodes\[1\]\.heartbeatAddress: needs cluster.heartbeat"):
        build_cluster("prod", prod, SECRETS)
    heartbeat(prod, "10.99.0.11/24", "10.99.0.12/24", "10.99.0.13/24")["haproxy-ha:cluster"]["heartbeat"]["interface"] = "eth0"
    with pytest.raises(ConfigError, match=rf"^{C}\.heartbeat\.interface: eth0 is the clients' interface"):
        build_cluster("prod", prod, SECRETS)


def test_with_a_heartbeat_the_adverts_and_the_firewall_move_there_and_the_vip_stays(prod):
    from components.files.render import render_node
    prod[C]["unicast"] = True
    cluster = build_cluster("prod", heartbeat(prod, "10.99.0.11/24", "10.99.0.12/24", "10.99.0.13/24"), SECRETS)
    files = {f.name: f.text for f in render_node(cluster, cluster.nodes[0])}
    conf = files["keepalived.conf"]
    assert "    interface eth1\n" in conf and "172.18.10.100/24 dev eth0" in conf
    assert "unicast_src_ip 10.99.0.11" in conf and "        10.99.0.12\n        10.99.0.13\n" in conf
    assert "track_interface {\n        eth0\n    }" in conf
    assert 'iifname "eth1" ip protocol 112 ip saddr @peers4 ip ttl 255 accept' in files["nftables.nft"]
    assert "elements = { 10.99.0.12, 10.99.0.13 }" in files["nftables.nft"]
    assert cluster.interfaces == ("eth0", "eth1")
