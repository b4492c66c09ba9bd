"""Run the Pulumi program under Pulumi's mocks and record everything it declares: each
resource's type, name, parent, inputs (with which of them are secret), dependencies and
options, in declaration order, plus the stack outputs. For fast unit tests of the program's
rules; the lab and the scenario tests run the real engine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT_DIR = Path(__file__).resolve().parent.parent
DYNAMIC = "pulumi-python:dynamic:Resource"
REMOTE_COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
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
    # A dynamic resource's provider, unpickled as the engine's provider process would.
    dynamic: Any = None

    @property
    def kind(self) -> str:
        """The dynamic provider's class name (NodeStateProvider, HostKeyProvider, ...) or the type."""
        return type(self.dynamic).__name__ if self.dynamic is not None else self.type


@dataclass
class Declaration:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # The PVE access the program's preflight was asked to check (platform proxmox).
    preflights: list[Any] = field(default_factory=list)

    def by_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def by_name(self, name: str) -> Declared:
        return next(r for r in self.resources if r.name == name)

    def steps(self) -> list[Declared]:
        """The commands: pulumi-command's, on the nodes and (the lab) on this machine."""
        return [r for r in self.resources if r.type in (REMOTE_COMMAND, LOCAL_COMMAND)]


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


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == DYNAMIC and "length" in state:  # SecretSeed: a fixed seed under mocks
            state["base64"] = base64.b64encode(hashlib.sha256(args.name.encode()).digest() * 2).decode()
        if args.typ == "proxmoxve:index/vmLegacy:VmLegacy":
            state.setdefault("vmId", 100)
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
        inputs = _unwrap(rpc.deserialize_properties(request.object))
        dynamic = None
        if request.type == DYNAMIC:
            import dill

            dynamic = dill.loads(base64.b64decode(inputs.pop("__provider")))
            raw.pop("__provider", None)
        self.declaration.resources.append(
            Declared(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                inputs=inputs,
                secret_inputs=frozenset(k for k, v in raw.items() if _has_secret(v)),
                dependencies=tuple(request.dependencies),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                ignore_changes=tuple(request.ignoreChanges),
                provider=request.provider,
                delete_before_replace=request.deleteBeforeReplace,
                dynamic=dynamic,
            )
        )
        return response



def config_map(config: dict[str, Any]) -> dict[str, str]:
    """Pulumi hands config to programs as strings, structured values JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def declare(stack: str, config: dict[str, Any], secret_keys: tuple[str, ...] = (),
            program: Path = PROJECT_DIR / "__main__.py") -> Declaration:
    """Run the program for `stack` with `config` (full keys) and return what it declared."""
    declaration = Declaration()
    mocks = _Mocks()
    settings.set_root_resource(None)  # a fresh root stack for every run in this process
    pulumi.runtime.set_all_config(config_map(config), list(secret_keys))
    pulumi.runtime.set_mocks(
        mocks, project="haproxy-ha", stack=stack, preview=False,
        monitor=_RecordingMonitor(mocks, declaration),
    )
    # No PVE answers under mocks: the preflight's own checks run against fakepve (tests/test_sim.py).
    with mock.patch("components.pve.preflight.check", lambda cluster, access: declaration.preflights.append(access)):
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
    exported = settings.get_root_resource().outputs  # type: ignore[union-attr]
    declaration.outputs = {
        key: _sync_await(pulumi.Output.from_input(value).future()) for key, value in sorted(exported.items())
    }
    return declaration


def changes(old: Declaration, new: Declaration) -> dict[str, str]:
    """Resource name -> what a change of config does to it: created, deleted, or, where its inputs
    differ, what its own provider's diff answers (our dynamic providers' real code), "replace" for
    a command whose triggers changed (pulumi-command's replaceOnChanges), "update" for the
    others. Not a plan: the engine's ordering and cascades are not modelled."""
    before = {r.urn: r for r in old.resources}
    after = {r.urn: r for r in new.resources}
    out: dict[str, str] = {}
    for urn, res in after.items():
        if res.type.startswith("haproxy-ha:index:"):
            continue
        prev = before.get(urn)
        if prev is None:
            out[res.name] = "create"
        elif prev.inputs != res.inputs:
            if res.dynamic is not None and hasattr(res.dynamic, "diff"):
                diff = res.dynamic.diff("id", prev.inputs, res.inputs)
                out[res.name] = "replace" if diff.replaces else "update" if diff.changes else "same"
            elif res.type in (REMOTE_COMMAND, LOCAL_COMMAND) and \
                    prev.inputs.get("triggers") != res.inputs.get("triggers"):
                out[res.name] = "replace"
            else:
                out[res.name] = "update"
    for urn, res in before.items():
        if urn not in after and not res.type.startswith("haproxy-ha:index:"):
            out[res.name] = "delete"
    return {k: v for k, v in out.items() if v != "same"}
