"""A stack made before pulumi-command ran the steps upgrades with one `pulumi up`, under load.

Until b95c6fc every remote and lab step was a `Step`, our own dynamic resource, and the nodes
were reached through a ProxyCommand. That commit's own lab harness brings a stack up; this
version's `pulumi up` then replaces every `Step` with a `remote.Command` or `local.Command`
(the old ones' deletes are no-ops: components/remote/step.py), reaches the nodes through the
bastion, puts HAProxy and keepalived under supervise-daemon, and keeps the machines and what they
serve.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import uuid

from lab import engine, labctl
from lab.kit import probe
from lab.stack import Lab
from tests.conftest import stack_config
from tests.lab_support import SLOTS, VIP_URL, holders, needs_lab, supervised

pytestmark = needs_lab

BEFORE = "b95c6fc"  # the last commit whose program ran its steps as `Step`s


def test_a_stack_made_with_step_upgrades_in_one_up_under_load(tmp_path):
    old = tmp_path / "before"
    old.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", BEFORE], cwd=engine.PROJECT_DIR,
                             capture_output=True, check=True).stdout
    (tmp_path / "before.tar").write_bytes(archive)
    with tarfile.open(tmp_path / "before.tar") as tar:
        tar.extractall(old, filter="data")
    (old / ".venv").symlink_to(engine.PROJECT_DIR / ".venv")
    stack = f"u{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        [sys.executable, "-c", "import sys; from lab.stack import Lab; from tests.conftest import stack_config; "
                               "Lab(sys.argv[1], stack_config('lab')).up()", stack],
        cwd=old, capture_output=True, text=True)
    lab = Lab(stack, stack_config("lab"))
    try:
        assert made.returncode == 0, made.stderr[-3000:]
        before = lab.resources()
        assert any(r["type"] == "pulumi-python:dynamic:Resource" and r["urn"].endswith("-bootstrap")
                   for r in before), "the old stack ran its steps as Steps"
        machines = sorted((labctl.lab_dir(lab.prefix) / "nodes").glob("*/unshare.pid"))
        booted = {p.parent.name: p.read_text() for p in machines}
        assert len(booted) == 3

        with probe.Load(lab, VIP_URL, workers=2, interval=0.005) as load:
            outcome = lab.up()
            result = load.stop()
        # keepalived moves under its supervisor by a stop and a start (HAProxy is handed over
        # without a gap): on the holder the VIP goes away and comes back once, and only
        # requests inside that failover may fail.
        assert len(result["outages"]) <= 2, result
        assert result["ok"] > 0
        for node in SLOTS:
            for daemon in ("haproxy", "keepalived"):
                assert supervised(lab, node, daemon), f"{node}: {daemon}"

        after = lab.resources()
        steps = [r for r in after if r["urn"].endswith(("-bootstrap", "-install", "-apply-haproxy"))
                 or "-file-" in r["urn"] or "-lab-node-" in r["urn"] or "-lab-web-" in r["urn"]]
        assert steps and {r["type"] for r in steps} == {"command:remote:Command", "command:local:Command"}
        dynamic = {r["urn"].rsplit("::", 1)[1] for r in after if r["type"] == "pulumi-python:dynamic:Resource"}
        assert all(n.endswith(("-hostkey", "-state", "-tls-ticket-seed")) for n in dynamic), dynamic
        assert "haproxy-ha-lab-net" not in {r["urn"].rsplit("::", 1)[1] for r in after}
        # The machines were kept (node-up found each node up, none booted again).
        assert {p.parent.name: p.read_text() for p in machines} == booted
        assert holders(lab) == ["k3s-lb-01"]
        assert outcome.outputs["vrrpStates"]["k3s-lb-01"] == {"haproxy_vip": "MASTER"}
        assert probe.http_get(lab, VIP_URL, 2)[0] == 200
        # Nothing left to do.
        assert lab.preview(expect_no_changes=True).ops() == {}
    finally:
        lab.down()
