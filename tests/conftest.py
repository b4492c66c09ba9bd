from __future__ import annotations

import copy
import os
import shutil
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from components.config.tls import names_in_config
from components.files.tlsissue import issue, new_ca
from components.model.model import Secrets

ROOT = Path(__file__).resolve().parent.parent
# How many configs the daemons checked in this run (reported at the end of the session).
VALIDATED: Counter[str] = Counter()


def stack_config(stack: str = "prod") -> dict:
    """The plain (non-secret) config of a checked-in stack, as full keys (a lab stack as shipped,
    not the copy `make lab` made)."""
    shipped = ROOT / "lab" / "stacks" / f"Pulumi.{stack}.yaml"
    path = shipped if shipped.exists() else ROOT / f"Pulumi.{stack}.yaml"
    return copy.deepcopy(yaml.safe_load(path.read_text())["config"])


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


@cache
def _test_ca() -> tuple[str, str]:
    return new_ca("haproxy-ha test CA")


@cache
def tls_bundle(name: str) -> str:
    """A certificate for `name` from the tests' CA, valid for the lab VIP too."""
    return issue(*_test_ca(), [f"{name}.haproxy-ha.test", "192.0.2.100"])


def tls_secrets(cfg: dict, *args, **kwargs) -> Secrets:
    """Secrets with a bundle for every certificate the config's frontends use."""
    return Secrets(*args, **kwargs, tls_bundles={n: tls_bundle(n) for n in names_in_config(cfg)})


@pytest.fixture(scope="module")
def lab():
    """A lab copy of the `lab` stack for the scenario module that asks for it, VIP on k3s-lb-01;
    torn down after the module, also when a test fails."""
    from tests.lab_support import running_lab

    with running_lab() as running:
        yield running
