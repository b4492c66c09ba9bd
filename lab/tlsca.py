"""The lab's TLS: a CA per stack and a certificate per name the frontends use, kept in the stack's
state folder. A `<name>.pem` already there is used as it is: that is how a user or a test
rotates a certificate (write a new one, run `up`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.config.errors import PROJECT
from components.config.tls import names_in_config
from components.files.tlsissue import issue, new_ca

DOMAIN = "haproxy-ha.test"


def ca_paths(tls_dir: Path) -> tuple[Path, Path]:
    return tls_dir / "ca.pem", tls_dir / "ca.key"


def ensure_ca(tls_dir: Path, stack: str) -> tuple[str, str]:
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = ca_paths(tls_dir)
    if not cert_path.exists():
        cert, key = new_ca(f"haproxy-ha lab CA ({stack})")
        key_path.write_text(key)
        key_path.chmod(0o600)
        cert_path.write_text(cert)
    return cert_path.read_text(), key_path.read_text()


def issue_for(tls_dir: Path, stack: str, name: str, vip: str, **kwargs: Any) -> str:
    """A new certificate for `name` (valid for the VIP and <name>.haproxy-ha.test), saved."""
    ca, ca_key = ensure_ca(tls_dir, stack)
    bundle = issue(ca, ca_key, [f"{name}.{DOMAIN}", vip], **kwargs)
    path = tls_dir / f"{name}.pem"
    path.write_text(bundle)
    path.chmod(0o600)
    return bundle


def lab_certificates(tls_dir: Path, stack: str, config: dict[str, Any]) -> dict[str, str]:
    """name -> bundle for every referenced name the config does not provide itself."""
    provided = config.get(f"{PROJECT}:tlsCertificates") or {}
    vip = str((config.get(f"{PROJECT}:cluster") or {}).get("vip", "")).split("/")[0]
    out = dict(provided) if isinstance(provided, dict) else {}
    for name in names_in_config(config):
        if name in out:
            continue
        path = tls_dir / f"{name}.pem"
        out[name] = path.read_text() if path.exists() else issue_for(tls_dir, stack, name, vip)
    return out
