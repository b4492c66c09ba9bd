"""Refresh for the replay runner: what `pulumi preview`/`up` do with `refresh: always`. Each
NodeState in the lab's state is read with the provider's real code (run in the lab's client
namespace, where the nodes are), its drift becomes an update in the plan, and executing that
update calls the provider's update (the restore)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .plan import Step
from .program import Declaration, Declared

DYNAMIC = "pulumi-python:dynamic:Resource"


class ProviderError(RuntimeError):
    pass


def _props(res: Declared) -> dict[str, Any]:
    return {k: v for k, v in res.inputs.items() if k != "__provider"}


def call(client_ns: str, project_dir: str, op: str, res: Declared, old: Declared | None) -> dict[str, Any]:
    """The provider's `op` (read, create, update) for one resource; returns its outputs. A read
    is of `res` as stored; an update goes from `old`'s state to `res`'s inputs."""
    olds = _props(res) if op == "read" else (old.outputs or _props(old)) if old else {}
    request = {"id": res.name, "olds": olds, "news": _props(res)}
    proc = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-m", "lab.nodestate_exec", op],
                          cwd=project_dir, input=json.dumps(request), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProviderError((proc.stderr or proc.stdout).strip()[-3000:])
    return json.loads(proc.stdout)


def refresh(client_ns: str, project_dir: str, state: Declaration | None) -> None:
    """Read every NodeState of the previous update again (outputs replaced in place)."""
    for res in state.resources if state else []:
        if res.type == DYNAMIC:
            res.outputs = call(client_ns, project_dir, "read", res, None)


def with_drift(steps: list[Step], state: Declaration | None) -> list[Step]:
    """A resource that matches its inputs but whose node drifted must be updated (restored)."""
    before = {r.urn: r for r in state.resources} if state else {}
    out = []
    for step in steps:
        old = before.get(step.resource.urn)
        if step.op == "same" and step.resource.type == DYNAMIC and old is not None and old.outputs.get("drift"):
            step = Step("update", step.resource, ("drift",))
        out.append(step)
    return out


def drift_lines(step: Step, state: Declaration | None) -> list[str]:
    before = {r.urn: r for r in state.resources} if state else {}
    old = before.get(step.resource.urn)
    return list(old.outputs.get("drift") or []) if old is not None else []
