"""A node reboots and comes back by itself: every service the program enabled starts in a
working order, the node holds no VIP until its HAProxy serves, with preempt the VIP returns to
it, and the next preview shows nothing to do. A rebooted backup moves nothing."""

from __future__ import annotations

import re
import subprocess
import sys

from lab.engine import PROJECT_DIR
from lab.kit import probe
from tests.lab_support import SLOTS, STATE_LOG, VIP_URL, holders, needs_lab, node_ns

pytestmark = needs_lab



def reboot(lab, node: str) -> None:
    """What `reboot` does to a node, as far as a namespace can (lab/labctl.py node-reboot)."""
    subprocess.run([sys.executable, "-m", "lab.labctl", "node-reboot", lab.prefix, SLOTS[node].removeprefix("n"),
                    node], cwd=PROJECT_DIR, check=True, capture_output=True)


def state_log(lab, node: str) -> list[str]:
    return probe.node_exec(node_ns(lab, node), f"cat {STATE_LOG}", check=False).stdout.splitlines()


def booted(lab, node: str) -> bool:
    ns = node_ns(lab, node)
    return all(probe.main_pids(ns, name) for name in ("rsyslogd", "haproxy", "haproxy-watch", "keepalived")) and \
        probe.node_exec(ns, "cat /run/haproxy-down", check=False).stdout.strip() == "0"


# The firewall (boot runlevel) is up before anything serves.
SERVICES = ("nftables", "rsyslog", "haproxy", "haproxy-watch", "keepalived")


def start_order(lab, node: str) -> list[str]:
    """The services in the order OpenRC marked them started since the boot (its `started` links,
    made as each start finished, to the nanosecond): ties would be an ordering the test cannot
    see, so they fail it."""
    out = probe.node_exec(node_ns(lab, node), "stat -c '%.9Y %n' /run/openrc/started/*").stdout
    when = {line.split()[1].rsplit("/", 1)[1]: float(line.split()[0]) for line in out.splitlines()}
    assert all(name in when for name in SERVICES), when
    assert len({when[name] for name in SERVICES}) == len(SERVICES), f"two services started at once: {when}"
    return sorted(SERVICES, key=lambda name: when[name])


def test_a_rebooted_backup_comes_back_by_itself_and_nothing_moves(lab):
    others = {n: len(state_log(lab, n)) for n in SLOTS if n != "k3s-lb-03"}
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
        reboot(lab, "k3s-lb-03")
        probe.wait_for(lambda: booted(lab, "k3s-lb-03"), 30, interval=0.2)
        load.served()
        result = load.stop()
    assert result["failed"] == 0, result
    assert holders(lab) == ["k3s-lb-01"]
    assert {n: len(state_log(lab, n)) for n in others} == others, "the other nodes did not change state"
    assert start_order(lab, "k3s-lb-03") == list(SERVICES)
    lab.preview(expect_no_changes=True)  # no drift on the rebooted node


def test_the_rebooted_holder_gets_the_vip_back_only_once_its_haproxy_serves(lab):
    seen = len(state_log(lab, "k3s-lb-01"))
    seen_next = len(state_log(lab, "k3s-lb-02"))
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005, timeout=0.5) as load:
        reboot(lab, "k3s-lb-01")
        # The next node took over: its own state log says so. (Polling who holds the VIP can miss
        # it: at 0.05 s adverts the holder may be back before the reboot command returns.)
        probe.wait_for(lambda: any("is now MASTER" in line for line in state_log(lab, "k3s-lb-02")[seen_next:]), 10)
        probe.wait_for(lambda: booted(lab, "k3s-lb-01") and holders(lab) == ["k3s-lb-01"], 30, interval=0.2)
        load.served()  # through the VIP on its home again
        result = load.stop()
    after = [re.search(r"is now (\w+)", line).group(1) for line in state_log(lab, "k3s-lb-01")[seen:]]
    # keepalived starts after haproxy-watch has seen HAProxy serve (and with the track file
    # failed until then, init_file 1): it comes up BACKUP or FAULT, and wins the VIP back.
    assert after and after[0] in ("BACKUP", "FAULT") and after[-1] == "MASTER", after
    assert start_order(lab, "k3s-lb-01") == list(SERVICES)
    # The VIP leaving and coming back; how long each lasts is bench/operator_bench.py's figure.
    assert len(result["outages"]) <= 2, result
    lab.preview(expect_no_changes=True)
