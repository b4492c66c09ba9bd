"""The JSON Schema of a stack file (`Pulumi.<stack>.yaml`), generated from the config models
(StackSpec and what it holds): editors check a stack file against it as it is typed, and
docs/configuration.md is generated from it. `python -m components schema` writes both.

The schema checks each value's shape, as the models do. The rules between values (priorities in
failover order, a backend that exists, a VRID no other stack uses...) stay the program's, which
names the key of the value that breaks one.
"""

from __future__ import annotations

import ast
import inspect
import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from .errors import PROJECT
from .fields import _HOST_RE, _HTTPS_RE, _NAME_RE, PATTERN_HELP
from .schema import SECRET_KEYS, StackSpec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keys of other namespaces (the Proxmox provider's, or another provider's) are theirs to check.
OTHER_NAMESPACE = rf"^(?!{PROJECT}:)[A-Za-z0-9_.-]+:."

# What `pulumi config set --secret` writes in the stack file.
ENCRYPTED = {
    "type": "object",
    "description": "A secret as `pulumi config set --secret` stores it (encrypted).",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}


# The printable ASCII a VRRP password may use: keepalived.conf quotes it in no way.
_VRRP_PASSWORD = r"""^((?!["'\\#!])[!-~]){1,8}$"""


def _secret(description: str, pattern: str, shape: str, **plain: Any) -> dict[str, Any]:
    value = {"type": "string", "pattern": pattern, "patternErrorMessage": shape, **plain}
    return {"description": description, "anyOf": [value, {"$ref": "#/$defs/Encrypted"}]}


def _secret_mapping(description: str, key_pattern: str) -> dict[str, Any]:
    """Set one entry at a time with `pulumi config set --secret --path 'KEY.<name>' ...`."""
    entry = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Encrypted"}]}
    mapping = {"type": "object", "propertyNames": {"pattern": key_pattern}, "additionalProperties": entry}
    return {"description": description, "anyOf": [mapping, {"$ref": "#/$defs/Encrypted"}]}


# The secrets (never in the models: components/model/model.py's Secrets checks their values).
SECRETS: dict[str, dict[str, Any]] = {
    "statsPassword": _secret(
        "The password of the HAProxy stats page and /metrics (user haproxy.stats.user); the nodes "
        "keep only its SHA-512 crypt.", r"^[^\r\n\x00]*$", "one line", minLength=8),
    "vrrpPassword": _secret(
        "VRRP PASS authentication between the nodes: VRRPv2, adverts every second at least (no "
        "sub-second failover) and IPv4 only. Absent: VRRPv3 without authentication.",
        _VRRP_PASSWORD,
        "1 to 8 characters of printable ASCII without spaces, quotes, backslash, `#` or `!`"),
    "sshPrivateKey": _secret(
        "The unencrypted private key (OpenSSH or PEM) the program logs in to the nodes with, as "
        "root; its public half is sshPublicKey.", "PRIVATE KEY-----",
        "an unencrypted private key: -----BEGIN ... PRIVATE KEY-----"),
    "tlsCertificates": _secret_mapping(
        "Certificate name -> PEM bundle (certificate, chain, private key) for the names "
        "frontends[].tls.certificates and backends[].tls.ca use.", _NAME_RE),
    "proxmoxApiTokens": _secret_mapping(
        "PVE host -> the API token of a standalone host listed in proxmoxHosts.",
        _HOST_RE),
}

# The program stops without them (components/settings.py).
REQUIRED_SECRETS = ("statsPassword", "sshPrivateKey")

# The Proxmox provider's keys the program reads (components/config/proxmox.py).
PROVIDER_KEYS: dict[str, dict[str, Any]] = {
    "proxmoxve:endpoint": {
        "description": "The PVE API of the hosts that form one cluster (platform proxmox; standalone "
        "hosts: proxmoxHosts).", "type": "string", "pattern": _HTTPS_RE},
    "proxmoxve:insecure": {
        "description": "Accept the PVE API's self-signed certificate.",
        "anyOf": [{"type": "boolean"}, {"enum": ["true", "false"]}], "default": False},
    "proxmoxve:apiToken": _secret(
        "The API token for proxmoxve:endpoint.", r"^[^@\s]+@[^!\s]+![^=\s]+=\S+$", "USER@REALM!TOKENID=SECRET"),
}


class _Generate(GenerateJsonSchema):
    """pydantic's generator without per-field titles, and with the defaults of `default_factory`."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def get_default_value(self, schema: Any) -> Any:
        if "default_factory" in schema and not schema.get("default_factory_takes_data"):
            return schema["default_factory"]()
        return super().get_default_value(schema)


def _models(model: type[BaseModel], found: dict[str, type[BaseModel]] | None = None) -> dict[str, type[BaseModel]]:
    """Every model StackSpec holds, by name (as pydantic names them in `$defs`)."""
    found = {} if found is None else found
    found[model.__name__] = model
    for field in model.model_fields.values():
        for inner in _types_in(field.annotation):
            if inner.__name__ not in found:
                _models(inner, found)
    return found


def _types_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _types_in(arg)]


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field key -> the `#` comment right above the field in the model's source: the models'
    documentation, kept where the field is."""
    lines, _ = inspect.getsourcelines(model)
    body = ast.parse("".join(lines)).body[0]
    assert isinstance(body, ast.ClassDef)
    keys = {name: field.alias or name for name, field in model.model_fields.items()}
    out = {}
    for node in body.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in keys:
            above, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            if above:
                out[keys[node.target.id]] = " ".join(above)
    return out


_MAPS = ("properties", "patternProperties", "$defs")  # name -> schema


def _tidy(node: Any) -> Any:
    """No titles; a mapping with constrained keys rejects the others; pattern help for editors."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _MAPS:
            out[key] = {name: _tidy(schema) for name, schema in value.items()}
        elif key in ("default", "const", "enum"):
            out[key] = value
        elif key != "title":
            out[key] = _tidy(value)
    if "patternProperties" in out and "properties" not in out:
        # dict[Name, X]: pydantic lists the key pattern; a key that does not match is an error.
        (pattern, value), = out.pop("patternProperties").items()
        out["propertyNames"] = {"pattern": pattern}
        out["additionalProperties"] = value
    if out.get("type") == "string" and out.get("pattern") in PATTERN_HELP:
        out["patternErrorMessage"] = PATTERN_HELP[out["pattern"]]
    return out


def stack_file_schema() -> dict[str, Any]:
    """The JSON Schema of a whole stack file: its `config:` keys, namespace included."""
    generated = StackSpec.model_json_schema(by_alias=True, schema_generator=_Generate)
    defs = generated.pop("$defs")
    for name, model in _models(StackSpec).items():
        target = generated if model is StackSpec else defs[name]
        for key, comment in field_comments(model).items():
            target["properties"][key].setdefault("description", comment)
    properties = {f"{PROJECT}:{key}": value for key, value in generated["properties"].items()}
    properties.update({f"{PROJECT}:{key}": SECRETS[key] for key in SECRET_KEYS})
    properties.update(PROVIDER_KEYS)
    config = {
        "type": "object",
        "description": "The stack's configuration: `<namespace>:<key>`.",
        "properties": properties,
        "patternProperties": {OTHER_NAMESPACE: {}},
        "additionalProperties": False,
        "required": [f"{PROJECT}:{key}" for key in generated["required"]],
    }
    return {"$schema": DRAFT, "title": "haproxy-ha stack file (Pulumi.<stack>.yaml)", **_tidy({
        "description": "Generated from components/config by `python -m components schema`; do not edit. "
        "The reference: docs/configuration.md.",
        "type": "object",
        "properties": {
            "config": config,
            # What Pulumi itself keeps in a stack file.
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "environment": {},
        },
        "additionalProperties": False,
        "$defs": {**dict(sorted(defs.items())), "Encrypted": ENCRYPTED},
    })}


def schema_text() -> str:
    return json.dumps(stack_file_schema(), indent=2, ensure_ascii=False) + "\n"
