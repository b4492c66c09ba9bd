"""Compare two declarations the way `pulumi preview` would for these resource types."""

from __future__ import annotations

from dataclasses import dataclass

from .program import Declaration, Declared, mock_id

COMMAND_TYPES = ("command:remote:Command", "command:local:Command")
# Inputs whose change makes the Proxmox provider replace a VM rather than update it.
REPLACE_ON = {"proxmoxve:index/vmLegacy:VmLegacy": ("nodeName", "vmId")}


@dataclass(frozen=True)
class Step:
    op: str  # create | update | replace | delete | same
    resource: Declared
    changed: tuple[str, ...] = ()


def _changed(old: Declared, new: Declared) -> tuple[str, ...]:
    keys = sorted(set(old.inputs) | set(new.inputs))
    return tuple(k for k in keys if old.inputs.get(k) != new.inputs.get(k))


def plan(old: Declaration | None, new: Declaration) -> list[Step]:
    """Steps in dependency order, then deletions (reverse order); components are left out."""
    before = {r.urn: r for r in old.resources} if old else {}
    steps: list[Step] = []
    # A replaced resource gets a new id, unknown until it exists: whatever lists that id in
    # its triggers is replaced too (a fresh VM must be provisioned again).
    replaced_ids: set[str] = set()
    for res in _dependency_order(new.resources):
        if res.type.startswith("haproxy-ha:index:"):
            continue
        prev = before.get(res.urn)
        if prev is None:
            steps.append(Step("create", res))
            continue
        changed = _changed(prev, res)
        if replaced_ids & {str(t) for t in res.inputs.get("triggers") or ()}:
            changed = tuple(sorted({*changed, "triggers"}))
        if not changed:
            steps.append(Step("same", res, ()))
        elif "triggers" in changed or any(k in changed for k in REPLACE_ON.get(res.type, ())):
            steps.append(Step("replace", res, changed))
            replaced_ids.add(mock_id(res.name))
        else:
            steps.append(Step("update", res, changed))
    urns = {r.urn for r in new.resources}
    for res in reversed(old.resources if old else []):
        if res.urn not in urns and not res.type.startswith("haproxy-ha:index:"):
            steps.append(Step("delete", res))
    return steps


def _dependency_order(resources: list[Declared]) -> list[Declared]:
    """Declaration order, adjusted so every resource comes after the ones it depends on."""
    by_urn = {r.urn: r for r in resources}
    done: set[str] = set()
    out: list[Declared] = []

    def visit(res: Declared, path: tuple[str, ...] = ()) -> None:
        if res.urn in done:
            return
        if res.urn in path:
            raise ValueError(f"dependency cycle through {res.urn}")
        for dep in sorted(res.dependencies):
            if dep in by_urn:
                visit(by_urn[dep], (*path, res.urn))
        done.add(res.urn)
        out.append(res)

    for res in resources:
        visit(res)
    return out
