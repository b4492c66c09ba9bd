"""A lab cluster for scenario tests: its own stack name, always torn down."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from lab.runner import Lab
from tests.conftest import stack_config

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "haproxy", "keepalived", "sshd", "nsenter")),
    reason="the lab needs root, iproute2, haproxy, keepalived, openssh-server (make setup)",
)


def new_lab(log=lambda line: None) -> Lab:
    return Lab(f"t{uuid.uuid4().hex[:8]}", stack_config("lab"), log=log)


def holders(lab: Lab) -> list[str]:
    out = lab.load_state().outputs
    return lab.vip_holders(out["vip"], out["nodes"])
