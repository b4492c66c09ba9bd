"""TLS certificate bundles: parsed and checked with `cryptography`, summarised for previews, and
the shared session-ticket keys. Pure: no Pulumi here. Nothing in an error or a summary ever
quotes key material."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import PROJECT, ConfigError, secret_mapping

KEY = f"{PROJECT}:tlsCertificates"
WARN_DAYS = 30
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)


@dataclass(frozen=True)
class Certificate:
    """One bundle: the PEM (secret) and what may be shown of it."""

    name: str
    pem: str  # leaf, chain, key: the order HAProxy reads
    subject: str
    sans: tuple[str, ...]
    serial: str
    not_after: dt.datetime
    fingerprint: str  # sha256 of the leaf and chain (public), for change detection
    # The certificates after the leaf (public PEM): what a backend trusts when tls.ca names it.
    chain_pem: str = ""
    # The leaf's OCSP responder (Authority Information Access), if it names one.
    ocsp_url: str | None = None

    def __repr__(self) -> str:
        return f"Certificate({self.name}, serial {self.serial}, <pem redacted>)"

    @property
    def summary(self) -> str:
        """What `preview --diff` shows of the bundle: never the PEM."""
        return (
            f"certificate {self.name}\n"
            f"subject: {self.subject}\n"
            f"SANs: {', '.join(self.sans) or '(none)'}\n"
            f"serial: {self.serial}\n"
            f"notAfter: {self.not_after.isoformat()}\n"
            f"sha256: {self.fingerprint}\n"
        )

    def expires_within(self, days: int, now: dt.datetime) -> bool:
        return self.not_after - now < dt.timedelta(days=days)


def parse_bundles(raw: Any) -> dict[str, str]:
    """`haproxy-ha:tlsCertificates`: name -> PEM bundle."""
    return secret_mapping(raw, KEY, "name -> PEM bundle", '"$(cat name.pem)"')


def names_in_config(config: Mapping[str, Any]) -> list[str]:
    """Certificate names a raw stack config uses (before validation, which checks them): the
    frontends' certificates and the backends' CAs that are not in haproxy.caBundles. To know
    which bundles to bring."""
    haproxy = config.get(f"{PROJECT}:haproxy") or {}
    frontends = haproxy.get("frontends") or []
    found = {n for fe in frontends if isinstance(fe, dict) for n in (fe.get("tls") or {}).get("certificates") or []}
    ca_bundles = haproxy.get("caBundles") or {}
    for be in haproxy.get("backends") or []:
        ca = ((be.get("tls") or {}) if isinstance(be, dict) else {}).get("ca")
        if ca and ca != "system" and ca not in ca_bundles:
            found.add(ca)
    return sorted(map(str, found))


def _ocsp_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    urls = [d.access_location.value for d in aia
            if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]
    return urls[0] if urls else None


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple([*ext.get_values_for_type(x509.DNSName), *map(str, ext.get_values_for_type(x509.IPAddress))])


def _public(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificate(name: str, bundle: str, now: dt.datetime) -> Certificate:
    """Check one bundle: certificates and exactly one matching unencrypted RSA/ECDSA key, leaf
    first, each next certificate the issuer of the one before, valid now. Errors name the key."""
    key_name = f"{KEY}.{name}"
    blocks = [m for m in _BLOCK.finditer(bundle)]
    certs: list[x509.Certificate] = []
    keys = []
    for block in blocks:
        kind = block.group(1)
        data = block.group(0).encode()
        if kind == "CERTIFICATE":
            try:
                certs.append(x509.load_pem_x509_certificate(data))
            except ValueError:
                raise ConfigError(key_name, f"certificate {len(certs) + 1} is not valid PEM") from None
        elif kind.endswith("PRIVATE KEY"):
            if kind == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in data:
                raise ConfigError(key_name, "the private key is encrypted; HAProxy needs it unencrypted")
            try:
                keys.append(serialization.load_pem_private_key(data, password=None))
            except (ValueError, TypeError):
                raise ConfigError(key_name, "the private key is not a valid PEM key") from None
    if not certs:
        raise ConfigError(key_name, "holds no certificate (expected: certificate, chain, private key in PEM)")
    if len(keys) != 1:
        raise ConfigError(key_name, f"holds {len(keys)} private keys; expected exactly one")
    (key,) = keys
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError(key_name, "the private key must be RSA or ECDSA")
    mine = [i for i, c in enumerate(certs) if _public(c.public_key()) == _public(key.public_key())]
    if not mine:
        raise ConfigError(key_name, "the private key does not match any certificate in the bundle")
    if mine[0] != 0:
        raise ConfigError(key_name, f"the certificate for the private key is number {mine[0] + 1}; "
                          "put it first, then its chain")
    for i in range(1, len(certs)):
        if certs[i].subject != certs[i - 1].issuer:
            raise ConfigError(key_name, f"certificate {i + 1} ({certs[i].subject.rfc4514_string()}) did not "
                              f"issue certificate {i} ({certs[i - 1].subject.rfc4514_string()}); order the chain "
                              "leaf first, each certificate followed by its issuer")
    leaf = certs[0]
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(key_name, f"expired on {leaf.not_valid_after_utc.isoformat()}")
    if leaf.not_valid_before_utc > now:
        raise ConfigError(key_name, f"not valid before {leaf.not_valid_before_utc.isoformat()}")
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Certificate(
        name=name,
        pem=(chain_pem + key_pem).decode(),
        subject=leaf.subject.rfc4514_string(),
        sans=_names(leaf),
        serial=f"{leaf.serial_number:x}",
        not_after=leaf.not_valid_after_utc,
        fingerprint=hashlib.sha256(chain_pem).hexdigest(),
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:]).decode(),
        ocsp_url=_ocsp_url(leaf),
    )


def load_certificates(referenced: Mapping[str, str], bundles: Mapping[str, str],
                      now: dt.datetime) -> dict[str, Certificate]:
    """Every referenced name must have a bundle; `referenced` maps name -> the key path that
    first names it (for the error)."""
    for name, where in referenced.items():
        if name not in bundles:
            known = f" (known: {', '.join(sorted(bundles))})" if bundles else ""
            raise ConfigError(where, f"no certificate {name!r} in {KEY}{known}; set it with "
                              f"`pulumi config set --secret --path '{KEY}.{name}' \"$(cat {name}.pem)\"`")
    return {name: load_certificate(name, bundles[name], now) for name in sorted(referenced)}


# --- Session-ticket keys ---------------------------------------------------------------------

TICKET_KEYS = 3  # HAProxy's TLS_TICKETS_NO: decrypts with all of them, encrypts with the middle one


def ticket_keys(seed_b64: str, generation: int) -> str:
    """HAProxy's `tls-ticket-keys` file: keys generation-1, generation, generation+1, each 80
    bytes (AES-256) derived from the secret seed kept in the stack state. Raising the generation
    by one rotates without a miss: the key that encrypted yesterday's tickets still decrypts."""
    seed = base64.b64decode(seed_b64)
    lines = []
    for g in range(generation - 1, generation + TICKET_KEYS - 1):
        block = b"".join(hmac.new(seed, f"haproxy-ha ticket key {g} part {i}".encode(), hashlib.sha256).digest()
                         for i in range(3))[:80]
        lines.append(base64.b64encode(block).decode())
    return "\n".join(lines) + "\n"
