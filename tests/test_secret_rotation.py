"""Rotating one secret re-runs only the steps that use it, under mocks: the stats password is in
haproxy.cfg only, the VRRP password in keepalived.conf only. And the plain hashes that mark a
secret file's change (in command strings and outputs) cannot be recomputed from a guess cheaply."""

from __future__ import annotations

import pytest

from components.files.render import render_node, service_applies
from components.model.model import build_cluster, content_hash
from tests.conftest import stack_config, tls_secrets
from tests.mocks import Declaration, changes, declare
from tests.program_support import SECRET_KEYS, STATS_PW, with_secrets

NODES = ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")
VRRP_PW = "k33pal1v"


def declared(vrrp_password: str | None = VRRP_PW, **secrets: str) -> Declaration:
    cfg = with_secrets(stack_config("prod"), vrrp_password)
    cfg.update({f"haproxy-ha:{key}": value for key, value in secrets.items()})
    return declare("prod", cfg, SECRET_KEYS)


def on_every_node(*steps: str) -> dict[str, str]:
    return {f"haproxy-ha-{node}-{step}": "update" for node in NODES for step in steps}


@pytest.fixture(scope="module")
def before() -> Declaration:
    return declared()


@pytest.mark.parametrize("vrrp_password", [VRRP_PW, None])
def test_rotating_the_stats_password_reruns_only_haproxys_steps(vrrp_password):
    diff = changes(declared(vrrp_password), declared(vrrp_password, statsPassword="another stats password"))
    # NodeState holds every file's text: it reads the node anew (nothing to restore).
    assert diff == on_every_node("file-haproxy-cfg", "apply-haproxy", "state")


def test_rotating_the_vrrp_password_reruns_only_keepaliveds_steps(before):
    diff = changes(before, declared(vrrp_password="n3wpass1"))
    assert diff == on_every_node("file-keepalived-conf", "apply-keepalived", "state")


def test_a_secret_files_change_mark_is_not_its_plain_hash(before):
    """keepalived.conf with its VRRP password is known but for the password: a plain hash of it in
    the apply step's command would let anyone who reads the state test password guesses offline."""
    cfg = stack_config("prod")
    cluster = build_cluster("prod", cfg, tls_secrets(cfg, STATS_PW, VRRP_PW))
    node = cluster.node("k3s-lb-01")
    texts = {f.name: f.text for f in render_node(cluster, node)}
    assert f"auth_pass {VRRP_PW}" in texts["keepalived.conf"]
    keepalived = next(svc for svc in service_applies(cluster) if svc.name == "keepalived")
    assert "keepalived.conf" in {a.name for a in keepalived.files}
    command = before.by_name("haproxy-ha-k3s-lb-01-apply-keepalived").inputs["create"]
    # What a guess would be checked against, were the files' plain texts hashed.
    plain = content_hash(*(texts[a.name] for a in keepalived.files))
    assert command.startswith("sh -s -- keepalived=") and VRRP_PW not in command
    assert command != f"sh -s -- keepalived={plain}"
