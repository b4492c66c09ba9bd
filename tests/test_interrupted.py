"""An interrupted rollout, as operators interrupt one: Ctrl-C in the terminal, and kill -9 of the
CLI, each once the first node's new haproxy.cfg is staged and before it is applied, under client
load through the VIP. No request fails, no node runs a half-applied config, no process of the run
stays behind, and the next `pulumi up` finishes the rollout (the lab clears what a killed CLI
leaves: its lock and pending creates, lab/interrupted.py)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lab import engine, labctl
from lab.kit import probe
from tests.conftest import stack_config
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, node_ns

pytestmark = needs_lab

FIRST = "k3s-lb-03"  # the first node of the rollout (backups first)


def with_balance(algorithm: str) -> dict:
    cfg = copy.deepcopy(stack_config("lab"))
    app = next(b for b in cfg["haproxy-ha:haproxy"]["backends"] if b["name"] == "app")
    app["balance"] = algorithm
    return cfg


def start_up(lab, cfg: dict, log: Path) -> subprocess.Popen:
    """`pulumi up` as a person starts it in a terminal: its own foreground process group."""
    lab.configure(cfg)
    env = {**os.environ, **engine.stack_env(lab.state_dir)}
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    argv = [engine.pulumi_path(env), "--non-interactive", "up", "--yes", "--skip-preview", "--stack", lab.stack,
            "--config-file", str(lab.config_file)]
    with open(log, "w") as out:
        return subprocess.Popen(argv, cwd=engine.PROJECT_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def staged(lab, node: str) -> str:
    path = labctl.lab_dir(lab.prefix) / "nodes" / node / "var-lib-haproxy-ha" / "staged" / "haproxy.cfg"
    return path.read_text() if path.exists() else ""


def descendants(pid: int) -> set[int]:
    """Every process under `pid` now (the language host, the program, each provider plugin)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def applying(lab, node: str) -> bool:
    """An apply script still runs on the node (after a kill -9 it runs on, to its end)."""
    for pid in probe.ns_pids(node_ns(lab, node)):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sh\0-s\0--\0"):  # sh -s -- SERVICE=HASH
                return True
        except OSError:
            continue
    return False


def running_config(lab, node: str) -> tuple[str, bool]:
    """The node's haproxy.cfg, and whether the HAProxy that serves took it (its newest worker
    started after the file last changed): a file swapped but not reloaded is half-applied."""
    ns = node_ns(lab, node)
    text = probe.node_exec(ns, "cat /etc/haproxy/haproxy.cfg").stdout
    changed = float(probe.node_exec(ns, "stat -c %Y /etc/haproxy/haproxy.cfg").stdout)
    (master,) = probe.main_pids(ns, "haproxy")
    newest = min(probe.age_seconds(w) for w in probe.children(ns, master))
    started = float(probe.node_exec(ns, "date +%s.%N").stdout) - newest
    return text, started + 1 >= changed


@pytest.mark.parametrize(("how", "algorithm"), [("ctrl-c", "leastconn"), ("kill -9", "source")])
def test_an_interrupted_rollout_fails_nothing_and_the_next_up_finishes_it(lab, tmp_path, how, algorithm):
    cfg = with_balance(algorithm)
    marker = f"balance {algorithm}"
    before = {node: running_config(lab, node)[0] for node in SLOTS}
    assert not any(marker in text for text in before.values())
    with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as fresh, \
            probe.Load(lab, VIP_URL, workers=1, interval=0.005, keepalive=True) as kept:
        cli = start_up(lab, cfg, tmp_path / "up.log")
        probe.wait_for(lambda: marker in staged(lab, FIRST), 90, interval=0.005)
        run = descendants(cli.pid) | {cli.pid}
        if how == "ctrl-c":
            os.killpg(cli.pid, signal.SIGINT)  # what the terminal sends its foreground group
        else:
            os.kill(cli.pid, signal.SIGKILL)
        status = cli.wait(120)
        # Every process of the run ends: the engine stops its plugins, or they see it gone.
        try:
            probe.wait_for(lambda: not [p for p in run if alive(p)], 15)
        except TimeoutError:
            left = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in run if alive(p)}
            for pid in left:  # ours: ended here, so that the failure leaves nothing running
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"left behind after {how}: {left}")
        probe.wait_for(lambda: not any(applying(lab, node) for node in SLOTS), 60)
        for node in SLOTS:
            text, took = running_config(lab, node)
            assert text in (before[node],) or marker in text, node
            assert took, f"{node}: haproxy.cfg swapped but not reloaded"
        new, ka = fresh.stop(), kept.stop()
    log = (tmp_path / "up.log").read_text()
    assert status != 0, log[-2000:]
    assert new["failed"] == 0 and ka["failed"] == 0, (new, ka)
    assert new["ok"] > 0 and ka["ok"] > 0
    assert holders(lab) == ["k3s-lb-01"]

    outcome = lab.up(cfg)  # the lab clears a dead CLI's lock and pending creates first
    assert [n for n in outcome.executed if n.endswith("apply-haproxy")], outcome.executed
    for node in SLOTS:
        text, took = running_config(lab, node)
        assert marker in text and took, node
    assert lab.preview(cfg, expect_no_changes=True).ops() == {}
