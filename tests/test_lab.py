"""Scenarios on a real cluster in network namespaces, under the real Pulumi engine, with the real
haproxy and keepalived. Each test leaves the cluster as it found it (VIP on k3s-lb-01)."""

from __future__ import annotations

import copy
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest

import components.files.render
from lab.kit import probe
from lab.stack import LabError
from tests.conftest import stack_config
from tests.lab_support import SLOTS as NODES
from tests.lab_support import VIP_URL, holders, needs_lab, node_ns, outputs

pytestmark = needs_lab



def serving(lab) -> bool:
    return probe.http_get(lab, VIP_URL, timeout=1)[0] == 200


def restore(lab, node: str, service: str) -> None:
    # A killed daemon's children exit on their own; start only when they are gone, or the
    # new daemon finds their pidfiles alive and refuses to start.
    probe.wait_for(lambda: not any(probe.comm(p) == service for p in probe.ns_pids(node_ns(lab, node))), 10)
    probe.node_exec(node_ns(lab, node), f"rc-service {service} restart")
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)


def test_up_serves_through_the_vip_from_the_highest_priority_node(lab):
    assert holders(lab) == ["k3s-lb-01"]
    # The first up's outputs: each node read once the whole rollout was done, one MASTER (read
    # while provisioned alone, each node had said MASTER).
    assert outputs(lab)["vrrpStates"] == {"k3s-lb-01": {"haproxy_vip": "MASTER"},
                                          "k3s-lb-02": {"haproxy_vip": "BACKUP"},
                                          "k3s-lb-03": {"haproxy_vip": "BACKUP"}}
    bodies = {probe.http_get(lab, VIP_URL)[1].strip() for _ in range(6)}
    assert bodies == {"backend 192.0.2.21", "backend 192.0.2.22"}, "roundrobin over both backends"
    assert probe.http_get(lab, "http://192.0.2.100:5000/static/app.css")[1].startswith("/* static")
    code, _ = probe.http_get(lab, "http://192.0.2.100:8404/")
    assert code == 401, "the stats page needs the password"
    user = f"admin:{lab.stats_password}@"
    assert probe.http_get(lab, f"http://{user}192.0.2.100:8404/metrics")[0] == 200
    # sshd was hardened by the bootstrap step.
    sshd = probe.node_exec(node_ns(lab, "k3s-lb-02"), "sshd.pam -T -f /etc/ssh/sshd_config").stdout
    assert "permitrootlogin without-password" in sshd and "passwordauthentication no" in sshd


def node_cat(lab, node: str, path: str) -> str:
    return probe.node_exec(node_ns(lab, node), f"cat {path}", check=False).stdout


def test_a_request_through_the_vip_lands_in_the_holders_haproxy_log_which_rotates(lab):
    """Audit finding 3: HAProxy's workers log from their chroot through rsyslog's socket there."""
    first, second = f"/log-probe-{uuid.uuid4().hex}", f"/log-probe-{uuid.uuid4().hex}"
    assert probe.http_get(lab, f"http://192.0.2.100:5000{first}")[0] in (200, 404)
    probe.wait_for(lambda: first in node_cat(lab, "k3s-lb-01", "/var/log/haproxy.log"), 5)
    line = next(x for x in node_cat(lab, "k3s-lb-01", "/var/log/haproxy.log").splitlines() if first in x)
    assert " haproxy[" in line and " main app/" in line
    assert first not in node_cat(lab, "k3s-lb-02", "/var/log/haproxy.log"), "only the VIP holder served it"
    # Rotated as the daily cron job would, rsyslog reopens its file (postrotate HUP).
    probe.node_exec(node_ns(lab, "k3s-lb-01"), "logrotate -f /etc/logrotate.d/haproxy")
    assert first in node_cat(lab, "k3s-lb-01", "/var/log/haproxy.log.1")
    probe.http_get(lab, f"http://192.0.2.100:5000{second}")
    probe.wait_for(lambda: second in node_cat(lab, "k3s-lb-01", "/var/log/haproxy.log"), 5)
    assert second not in node_cat(lab, "k3s-lb-01", "/var/log/haproxy.log.1")


def test_every_node_resolves_through_the_configured_servers_and_the_host_keeps_its_own(lab):
    """Audit finding 4: the node starts without /etc/resolv.conf; bootstrap writes our block."""
    for node in NODES:
        assert node_cat(lab, node, "/etc/resolv.conf") == "# BEGIN haproxy-ha\nnameserver 192.0.2.1\n# END haproxy-ha\n"
    assert "haproxy-ha" not in Path("/etc/resolv.conf").read_text()


def test_services_start_at_boot_on_the_node_and_nothing_changed_on_the_host(lab):
    enabled = probe.node_exec(node_ns(lab, "k3s-lb-02"), "rc-update show default").stdout
    for service in ("haproxy", "keepalived", "rsyslog"):
        assert re.search(rf"^\s*{service} \|\s*default", enabled, re.M), service
    assert node_cat(lab, "k3s-lb-02", "/etc/sysctl.d/90-haproxy-ha.conf") == "net.ipv4.ip_nonlocal_bind = 1\n"
    assert not Path("/etc/sysctl.d/90-haproxy-ha.conf").exists()
    assert not Path("/etc/runlevels/default/rsyslog").exists()


def test_sshd_rejecting_the_hardened_config_says_what_ran_and_what_it_printed(lab):
    """Audit finding 5: the node's sshd is sshd.pam; a rejection quotes the command and its output."""
    node = node_ns(lab, "k3s-lb-03")
    probe.node_exec(node, "cp -p /etc/ssh/sshd_config /var/lib/haproxy-ha/sshd_config.good && "
                          "sed -i '/^# BEGIN haproxy-ha$/,/^# END haproxy-ha$/d' /etc/ssh/sshd_config && "
                          "echo 'NoSuchOption yes' >> /etc/ssh/sshd_config")
    try:
        expected = (r"(?s)k3s-lb-03-bootstrap.*sshd rejected the hardened config; /etc/ssh/sshd_config left "
                    r"unchanged\. Ran: /usr/sbin/sshd\.pam -t -f /etc/ssh/sshd_config\.new; it printed: .*NoSuchOption")
        with pytest.raises(LabError, match=expected):
            lab.up(replace=("k3s-lb-03-bootstrap",))
        assert "NoSuchOption" in node_cat(lab, "k3s-lb-03", "/etc/ssh/sshd_config"), "left unchanged"
    finally:
        probe.node_exec(node, "mv -f /var/lib/haproxy-ha/sshd_config.good /etc/ssh/sshd_config")
    assert lab.up(replace=("k3s-lb-03-bootstrap",)).executed == ["haproxy-ha-k3s-lb-03-bootstrap"]


def test_up_again_with_the_same_config_executes_nothing(lab):
    lab.preview(expect_no_changes=True)  # the engine fails this itself if anything would change
    outcome = lab.up()
    assert outcome.executed == []


def test_haproxy_killed_on_the_holder_moves_the_vip_and_it_returns_with_preempt(lab):
    assert probe.kill(node_ns(lab, "k3s-lb-01"), "haproxy"), "no haproxy master found"
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 10)
    probe.wait_for(lambda: serving(lab), 5)
    restore(lab, "k3s-lb-01", "haproxy")
    assert serving(lab)


def test_keepalived_killed_on_the_holder_moves_the_vip(lab):
    assert probe.kill(node_ns(lab, "k3s-lb-01"), "keepalived")
    probe.wait_for(lambda: "k3s-lb-02" in holders(lab), 10)
    assert serving(lab)
    restore(lab, "k3s-lb-01", "keepalived")


def test_holder_link_down_moves_the_vip(lab):
    bridge = lab.ns("br")
    probe.subprocess.run(["ip", "-n", bridge, "link", "set", "n11", "down"], check=True)
    try:
        probe.wait_for(lambda: "k3s-lb-02" in holders(lab), 10)
        probe.wait_for(lambda: serving(lab), 5)
    finally:
        probe.subprocess.run(["ip", "-n", bridge, "link", "set", "n11", "up"], check=True)
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)


def test_rolling_change_under_load_backups_first_zero_failed_requests(lab):
    cfg = stack_config("lab")
    cfg["haproxy-ha:haproxy"]["backends"][1]["servers"].append({"name": "app3", "address": "192.0.2.23:8080"})
    with probe.Load(lab, VIP_URL, workers=2) as load, probe.Load(lab, VIP_URL, keepalive=True, workers=2) as ka:
        load.served()
        ka.served()
        outcome = lab.up(cfg)
        load.served()  # both kinds of client, on the new config everywhere
        ka.served()
        fresh, kept = load.stop(), ka.stop()
    applies = [n for n in outcome.executed if n.endswith("apply-haproxy")]
    assert applies == [f"haproxy-ha-{n}-apply-haproxy" for n in ("k3s-lb-03", "k3s-lb-02", "k3s-lb-01")]
    assert fresh["failed"] == 0 and fresh["ok"] > 0, fresh
    assert kept["failed"] == 0 and kept["ok"] > 0, kept
    bodies = {probe.http_get(lab, VIP_URL)[1].strip() for _ in range(9)}
    assert "backend 192.0.2.23" in bodies, "the new server takes traffic"
    lab.base_config = cfg


@pytest.fixture
def broken_templates(tmp_path, monkeypatch):
    """A template directory whose haproxy.cfg the model accepts but the node's haproxy may not."""
    copy_dir = tmp_path / "templates"
    shutil.copytree(components.files.render.TEMPLATES, copy_dir)
    # The program runs in the engine's language host: it finds the copy through the environment.
    monkeypatch.setenv("HAPROXY_HA_TEMPLATES", str(copy_dir))

    def inject(after: str, line: str) -> None:
        path = copy_dir / "haproxy.cfg.j2"
        text = path.read_text()
        assert after in text
        path.write_text(text.replace(after, f"{after}\n{line}", 1))

    return inject


def live_haproxy_cfg(lab, node: str) -> str:
    return probe.node_exec(node_ns(lab, node), "cat /etc/haproxy/haproxy.cfg").stdout


def test_a_directive_haproxy_rejects_stops_the_rollout_at_the_first_node(lab, broken_templates):
    before = {n: live_haproxy_cfg(lab, n) for n in NODES}
    # Known to HAProxy 2.9+, unknown to the 2.6 the lab runs: passes the model, fails `haproxy -c`.
    broken_templates("    maxconn {{ haproxy.maxconn }}", "    tune.h2.fe.max-total-streams 1000")
    with probe.Load(lab, VIP_URL, workers=1, interval=0.005) as load:
        rejected = r"(?s)k3s-lb-03-apply-haproxy.*rejected by haproxy -dW -c.*tune.h2.fe.max-total-streams"
        with pytest.raises(LabError, match=rejected) as err:
            lab.up(copy.deepcopy(lab.base_config))
        result = load.stop()
    assert "nothing changed" in str(err.value)
    assert {n: live_haproxy_cfg(lab, n) for n in NODES} == before, "no node runs the bad config"
    assert result["failed"] == 0, result
    assert holders(lab) == ["k3s-lb-01"]


def test_a_config_that_fails_the_health_gate_is_rolled_back(lab, broken_templates):
    before = live_haproxy_cfg(lab, "k3s-lb-03")
    # Valid for haproxy -c, but the node then reports itself unhealthy on /healthz.
    broken_templates("    monitor-uri /healthz", "    monitor fail if TRUE")
    with probe.Load(lab, VIP_URL, workers=1, interval=0.005) as load:
        with pytest.raises(LabError, match=r"(?s)k3s-lb-03-apply-haproxy.*previous files are restored and serving"):
            lab.up(copy.deepcopy(lab.base_config))
        result = load.stop()
    assert live_haproxy_cfg(lab, "k3s-lb-03") == before
    health = "curl -fsS -o /dev/null http://127.0.0.1:8404/healthz"
    assert probe.node_exec(node_ns(lab, "k3s-lb-03"), health).returncode == 0
    assert result["failed"] == 0, result
    assert holders(lab) == ["k3s-lb-01"]


def test_the_next_good_config_applies_cleanly_after_a_failed_rollout(lab):
    outcome = lab.up()
    assert not any(n.endswith("apply-haproxy") for n in outcome.executed), "nodes already run this config"
    assert lab.up().executed == []


def haproxy_workers(lab, node: str) -> set[int]:
    return {p for p in probe.ns_pids(node_ns(lab, node)) if probe.comm(p) == "haproxy"}


def test_drift_a_hand_edit_is_restored_by_the_next_apply(lab):
    node = node_ns(lab, "k3s-lb-02")
    good = live_haproxy_cfg(lab, "k3s-lb-02")
    clean_workers = haproxy_workers(lab, "k3s-lb-01")
    probe.node_exec(node, "echo '# edited by hand' >> /etc/haproxy/haproxy.cfg")
    assert live_haproxy_cfg(lab, "k3s-lb-02") != good
    outcome = lab.up(replace=("apply-haproxy",))
    assert live_haproxy_cfg(lab, "k3s-lb-02") == good
    assert len([n for n in outcome.executed if n.endswith("apply-haproxy")]) == 3
    # A node whose files were intact was not reloaded: same haproxy workers as before.
    assert haproxy_workers(lab, "k3s-lb-01") == clean_workers


def settled(lab, seconds: float) -> bool:
    before = [probe.vrrp_transitions(node_ns(lab, n)) for n in NODES]
    time.sleep(seconds)
    return before == [probe.vrrp_transitions(node_ns(lab, n)) for n in NODES]


def test_without_preempt_the_vip_stays_where_it_moved(lab):
    cfg = copy.deepcopy(lab.base_config)
    cfg["haproxy-ha:cluster"]["preempt"] = False
    outcome = lab.up(cfg)
    assert {n for n in outcome.executed if n.endswith("apply-haproxy")} == set()
    try:
        # Reloaded into nopreempt, every node restarts as BACKUP and they elect anew: wait
        # until no node has changed state for 2 s.
        probe.wait_for(lambda: len(holders(lab)) == 1 and settled(lab, 2), 20, interval=0.5)
        first = holders(lab)[0]
        assert probe.kill(node_ns(lab, first), "haproxy")
        probe.wait_for(lambda: holders(lab) not in ([], [first]), 10)
        moved_to = holders(lab)
        # Start it again once its workers are gone too (they leave when their master does).
        probe.wait_for(lambda: not any(probe.comm(p) == "haproxy" for p in probe.ns_pids(node_ns(lab, first))), 10)
        probe.node_exec(node_ns(lab, first), "rc-service haproxy restart")
        time.sleep(4)  # longer than a check's rise time: with preempt it would be back by now
        log = {n: node_cat(lab, n, "/var/log/keepalived-state-change.log").splitlines()[-6:] for n in NODES}
        assert holders(lab) == moved_to, log
        assert serving(lab)
    finally:
        lab.up(lab.base_config)
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)


def test_no_secret_in_the_state_the_outputs_or_what_the_engine_printed(lab, tmp_path):
    """Command keeps each step's stdout and stderr in the state; the engine prints them and logs
    every event. None of it may hold a secret: the stats password or its hash, the SSH key, a TLS
    private key, the session-ticket keys."""
    node = node_ns(lab, "k3s-lb-02")
    stats_hash = re.search(r"user admin password (\S+)", probe.node_exec(node, "cat /etc/haproxy/haproxy.cfg").stdout)
    ticket_keys = probe.node_exec(node, "cat /etc/haproxy/certs/tls-ticket-keys").stdout.split()
    pem_bodies = [line for pem in [(lab.state_dir / "id_ed25519").read_text(),
                                   *(p.read_text() for p in lab.tls_dir.glob("*.pem"))]
                  for block in re.findall(r"PRIVATE KEY-----\n(.*?)-----END", pem, re.S)
                  for line in block.splitlines() if len(line) > 20]
    secrets = {"stats password": lab.stats_password, "stats hash": stats_hash.group(1),
               **{f"ticket key {i}": k for i, k in enumerate(ticket_keys)},
               **{f"private key line {i}": line for i, line in enumerate(pem_bodies)}}
    assert stats_hash and ticket_keys and len(pem_bodies) > 2

    # A new ticket-key generation stages the keys file and re-runs apply-haproxy on every node,
    # as printed by the engine and logged in its event log.
    cfg = copy.deepcopy(lab.base_config)
    cfg["haproxy-ha:haproxy"]["tlsTicketKeyGeneration"] = 2
    lab.configure(cfg)
    events = tmp_path / "events.jsonl"
    printed = lab.pulumi("up", "--yes", "--skip-preview", "--diff", "--event-log", str(events)).stdout
    try:
        texts = {"pulumi up's output": printed, "the event log": events.read_text(),
                 "pulumi stack export": lab.pulumi("stack", "export").stdout,
                 "pulumi stack output": lab.pulumi("stack", "output", "--json").stdout}
        new_keys = probe.node_exec(node, "cat /etc/haproxy/certs/tls-ticket-keys").stdout.split()
        secrets.update({f"new ticket key {i}": k for i, k in enumerate(new_keys)})
        for where, text in texts.items():
            for what, secret in secrets.items():
                assert secret not in text, f"{what} in {where}"
        # The steps' outputs are there, only without secrets.
        assert "haproxy-ha[k3s-lb-02]: haproxy: applied and reloaded" in texts["pulumi stack export"]
    finally:
        lab.up(lab.base_config)
