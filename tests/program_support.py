"""Run the real program under Pulumi mocks (no CLI) for a stack config."""

from __future__ import annotations

import subprocess
import tempfile
from functools import cache
from pathlib import Path

from components.config.tls import names_in_config
from tests.conftest import stack_config, tls_bundle
from tests.mocks import Declaration, declare

STATS_PW = "correct horse battery"
API_TOKEN = "root@pam!pulumi=0f2c6a1e-7b5d-4c3a-9e8f-1a2b3c4d5e6f"
SECRET_KEYS = ("haproxy-ha:statsPassword", "haproxy-ha:sshPrivateKey", "proxmoxve:apiToken", "haproxy-ha:vrrpPassword",
               "haproxy-ha:tlsCertificates")


@cache
def private_key() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
        return path.read_text()


def with_secrets(cfg: dict, vrrp_password: str | None = None) -> dict:
    cfg = dict(cfg)
    cfg["haproxy-ha:statsPassword"] = STATS_PW
    cfg["haproxy-ha:sshPrivateKey"] = private_key()
    cfg["proxmoxve:apiToken"] = API_TOKEN
    if vrrp_password:
        cfg["haproxy-ha:vrrpPassword"] = vrrp_password
    if names_in_config(cfg) and "haproxy-ha:tlsCertificates" not in cfg:
        cfg["haproxy-ha:tlsCertificates"] = {n: tls_bundle(n) for n in names_in_config(cfg)}
    return cfg


def run(cfg: dict | None = None, stack: str = "prod", vrrp_password: str | None = None) -> Declaration:
    return declare(stack, with_secrets(cfg if cfg is not None else stack_config(stack), vrrp_password), SECRET_KEYS)
