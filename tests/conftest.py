from __future__ import annotations

import copy
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# How many configs the daemons checked in this run (reported at the end of the session).
VALIDATED: Counter[str] = Counter()


def stack_config(stack: str = "prod") -> dict:
    """The plain (non-secret) config of a checked-in stack, as full keys."""
    return copy.deepcopy(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


@pytest.fixture
def prod() -> dict:
    return stack_config("prod")


requires_daemons = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("keepalived")),
    reason="haproxy and keepalived are not installed (make setup installs them)",
)
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def pytest_terminal_summary(terminalreporter):
    if VALIDATED:
        parts = ", ".join(f"{count} {what}" for what, count in sorted(VALIDATED.items()))
        terminalreporter.write_line(f"configs accepted by the real daemons: {parts}")
