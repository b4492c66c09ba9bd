"""Run the Pulumi program under mocks and record everything it declares.

This is how the program is tested without the Pulumi CLI, and what the replay runner
executes: each resource's type, name, parent, inputs (with which of them are secret), its
dependencies and resource options, in declaration order, plus the stack outputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_SIG = rpc._special_secret_sig  # noqa: SLF001 - the wire marker of a secret value


@dataclass
class Declared:
    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    secret_inputs: frozenset[str]
    dependencies: tuple[str, ...]
    additional_secret_outputs: tuple[str, ...]
    ignore_changes: tuple[str, ...]
    provider: str
    delete_before_replace: bool = False
    # What a dynamic resource's provider last returned (the lab keeps it as Pulumi's state would).
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
            "inputs": self.inputs, "secret_inputs": sorted(self.secret_inputs),
            "dependencies": list(self.dependencies), "delete_before_replace": self.delete_before_replace,
            "outputs": self.outputs,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Declared:
        return Declared(
            urn=data["urn"], type=data["type"], name=data["name"], parent=data["parent"],
            inputs=data["inputs"], secret_inputs=frozenset(data["secret_inputs"]),
            dependencies=tuple(data["dependencies"]), additional_secret_outputs=(), ignore_changes=(),
            provider="", delete_before_replace=data["delete_before_replace"], outputs=data.get("outputs", {}),
        )


@dataclass
class Declaration:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def by_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def by_name(self, name: str) -> Declared:
        return next(r for r in self.resources if r.name == name)


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIG:  # noqa: SLF001
            return True
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _unwrap(value: Any) -> Any:
    """Plain values: secret markers removed (which inputs were secret is kept separately)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIG:  # noqa: SLF001
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def mock_id(name: str) -> str:
    """The id the mocks give a resource: stable, so two runs of the program compare equal."""
    return f"{name}-id"


RANDOM_BYTES = "random:index/randomBytes:RandomBytes"


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, random_seed: bytes):
        super().__init__()
        # Random resources keep their value in the stack state: here, derived from a seed the
        # caller keeps (the lab keeps one per stack), so every run sees the same bytes.
        self.random_seed = random_seed

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == RANDOM_BYTES:
            length = int(args.inputs.get("length", 32))
            stream = b"".join(hmac.new(self.random_seed, f"{args.name}/{i}".encode(), hashlib.sha256).digest()
                              for i in range(length // 32 + 1))[:length]
            state.update(base64=base64.b64encode(stream).decode(), hex=stream.hex())
        if args.typ == "proxmoxve:index/vmLegacy:VmLegacy":
            state.setdefault("vmId", 100)
        if args.typ.startswith("command:"):
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        return mock_id(args.name), state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, declaration: Declaration):
        super().__init__(mocks)
        self.declaration = declaration

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = json_format.MessageToDict(request.object)
        self.declaration.resources.append(
            Declared(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                inputs=_unwrap(rpc.deserialize_properties(request.object)),
                secret_inputs=frozenset(k for k, v in raw.items() if _has_secret(v)),
                dependencies=tuple(request.dependencies),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                ignore_changes=tuple(request.ignoreChanges),
                provider=request.provider,
                delete_before_replace=request.deleteBeforeReplace,
            )
        )
        return response



def config_map(config: dict[str, Any]) -> dict[str, str]:
    """Pulumi hands config to programs as strings, structured values JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def declare(stack: str, config: dict[str, Any], secret_keys: tuple[str, ...] = (),
            program: Path = PROJECT_DIR / "__main__.py", random_seed: bytes = b"haproxy-ha mocks") -> Declaration:
    """Run the program for `stack` with `config` (full keys) and return what it declared."""
    declaration = Declaration()
    mocks = _Mocks(random_seed)
    settings.set_root_resource(None)  # a fresh root stack for every run in this process
    pulumi.runtime.set_all_config(config_map(config), list(secret_keys))
    pulumi.runtime.set_mocks(
        mocks, project="haproxy-ha", stack=stack, preview=False,
        monitor=_RecordingMonitor(mocks, declaration),
    )
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
    exported = settings.get_root_resource().outputs  # type: ignore[union-attr]
    declaration.outputs = {
        key: _sync_await(pulumi.Output.from_input(value).future()) for key, value in sorted(exported.items())
    }
    return declaration
