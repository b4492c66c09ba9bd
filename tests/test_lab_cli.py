"""`python -m lab` reports a config error like Pulumi does: one line, exit status 2, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from lab import labctl
from tests.conftest import ROOT


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
@pytest.mark.parametrize("command", ["preview", "up"])
def test_a_config_error_is_one_line_and_exit_status_2(command):
    stack = f"tbad{uuid.uuid4().hex[:6]}"
    path = ROOT / f"Pulumi.{stack}.yaml"
    text = (ROOT / "lab" / "stacks" / "Pulumi.lab.yaml").read_text()
    text = text.replace("    interface: eth0\n", "    interface: eth0\n    bogus: 1\n")
    path.write_text(text)
    try:
        proc = subprocess.run([sys.executable, "-m", "lab", command, "--stack", stack], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    finally:
        path.unlink()
    assert proc.returncode == 2
    assert proc.stderr == "error: haproxy-ha:cluster.bogus: unknown key\n"
    assert not (labctl.LAB_ROOT / "stacks" / stack).exists(), "no credentials left for a stack never applied"
