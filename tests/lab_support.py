"""A lab cluster for scenario tests under the real Pulumi engine: its own stack (own backend,
passphrase and config file), always destroyed."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lab.kit import probe
from lab.kit.shape import SLOTS, VIP_URL  # noqa: F401 - the tests import them from here
from lab.stack import Lab
from tests.conftest import stack_config

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "haproxy", "keepalived", "sshd", "nsenter")),
    reason="the lab needs root, iproute2, haproxy, keepalived, openssh-server (make setup)",
)


def new_lab(log=lambda line: None, config: dict | None = None) -> Lab:
    return Lab(f"t{uuid.uuid4().hex[:8]}", config or stack_config("lab"), log=log)


@contextmanager
def running_lab(config: dict | None = None) -> Iterator[Lab]:
    """A lab copy of the `lab` stack (or of `config`), up with the VIP on k3s-lb-01; always torn down."""
    lab = new_lab(config=config)
    try:
        lab.up()
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
        yield lab
    finally:
        lab.down()


def node_ns(lab: Lab, node: str) -> str:
    return lab.ns(SLOTS[node])


def holders(lab: Lab) -> list[str]:
    out = outputs(lab)
    return lab.vip_holders(out["vip"], out["nodes"])


def outputs(lab: Lab) -> dict:
    """The stack outputs of the last update (read once per lab: a `pulumi stack output` is ~1 s)."""
    cached = getattr(lab, "_outputs_cache", None)
    if cached is None or cached[0] != lab.config_file.stat().st_mtime_ns:
        cached = (lab.config_file.stat().st_mtime_ns, lab.outputs())
        lab._outputs_cache = cached  # type: ignore[attr-defined]
    return cached[1]


def node_states(lab: Lab) -> dict[str, dict]:
    """Each node's NodeState outputs as the state holds them (what the last read found)."""
    return {r["urn"].rsplit("::", 1)[1].removeprefix("haproxy-ha-").removesuffix("-state"): r.get("outputs", {})
            for r in lab.resources() if r["urn"].endswith("-state")}
