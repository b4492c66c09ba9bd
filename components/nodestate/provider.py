"""NodeState: a dynamic Pulumi resource per node whose `read` reports what is really on the node
(one SSH round trip, read only) and whose `update` restores what drifted with the node's own
safe-apply scripts. With `refresh: always` (Pulumi.yaml) every preview shows drift as a diff of
`drift`, and every `up` restores it, node by node in rolling order.

It runs in the engine's dynamic-provider process, which imports it by reference.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from ..files.redact import redact_secrets
from ..model.firewall import CONFIRM_DIAL_ATTEMPTS
from ..remote import ssh
from .live import Desired, Live, ServiceWant, drift, parse_probe


def _desired(props: dict[str, Any]) -> Desired:
    return Desired(
        files={k: (v[0], v[1]) for k, v in props["files"].items()},
        services=tuple(ServiceWant(s["name"], s["pidfile"], s["comm"], tuple(s["files"]), s["worker"])
                       for s in props["services"]),
        sshd_block=props["sshdBlock"],
        firewall="apply-firewall" in props["scripts"],
    )


def _connect(props: dict[str, Any], attempts: int = 1):
    return ssh.shared(ssh.Target.from_props(props), attempts=attempts)


run = ssh.run


def read_live(props: dict[str, Any]) -> Live:
    """One SSH round trip: the probe script on stdin, its facts on stdout."""
    try:
        client = _connect(props)
    except ssh.HostKeyMismatch:
        raise  # not drift to restore: an impostor, or a rebuild to record (see the message)
    except Exception as exc:  # noqa: BLE001 - any other failure to reach the node is "unreachable"
        return Live(reachable=False, error=f"{type(exc).__name__}: {exc}"[:200])
    try:
        code, out, err = run(client, "sh -s", props["probe"], timeout=60)
    except Exception as exc:  # noqa: BLE001 - a connection that broke mid-read is "unreachable"
        ssh.forget(ssh.Target.from_props(props), client)
        return Live(reachable=False, error=f"{type(exc).__name__}: {exc}"[:200])
    if code != 0:
        return Live(reachable=False, error=f"probe exit status {code}: {err.strip()[:200]}")
    return parse_probe(out)


def outputs(props: dict[str, Any], live: Live) -> dict[str, Any]:
    """The resource's state: the desired inputs (the files and key stay secret outputs) plus
    what was read."""
    return {
        **props,
        "reachable": live.reachable,
        "drift": drift(_desired(props), live),
        "vrrp": dict(sorted(live.vrrp.items())),
        "addresses": sorted(live.addresses),
    }


def restore(props: dict[str, Any]) -> Live | None:
    """Upload every managed file to the staging folder and run the apply steps of what drifted
    (the same scripts as the first rollout: validate, swap, reload, health gate, rollback).
    Returns what it read when nothing had drifted (no second read needed), else None."""
    desired = _desired(props)
    live = read_live(props)
    before = drift(desired, live)
    if not before:
        return live
    if before[0].startswith("node unreachable"):
        raise RuntimeError(f"{props['host']}: {before[0]}")
    client = _connect(props)
    # The node's shared connection (components/remote/ssh.py): never closed here.
    for name, text in sorted(props["texts"].items()):
        code, _, err = run(client, f'set -eu; umask 077; mkdir -p {props["stageDir"]}; '
                                   f'cat > "{props["stageDir"]}/{name}.tmp"; '
                                   f'mv -f "{props["stageDir"]}/{name}.tmp" "{props["stageDir"]}/{name}"', text)
        if code:
            raise RuntimeError(f"{props['host']}: staging {name} failed: {err.strip()[-500:]}")
    for step in (s for s in props["steps"] if _touches(s, before)):
        # `force`: swap and reload even where the files match (a daemon on older files).
        code, out, err = run(client, "sh -s -- force", props["scripts"][step["name"]])
        if code:
            raise RuntimeError(f"{props['host']}: {step['name']} failed (rolled back): {_said(err or out)}")
        if step.get("confirm"):
            client = confirm(props, client, step["confirm"])
    return None


def confirm(props: dict[str, Any], client, script: str):
    """A step on probation (the firewall) is confirmed over a new SSH connection: the old one
    is dropped, and the new one, which the new rules must let in, runs `script`. Returns it."""
    target = ssh.Target.from_props(props)
    ssh.forget(target, client)
    try:
        fresh = _connect(props, attempts=CONFIRM_DIAL_ATTEMPTS)
    except Exception as exc:  # noqa: BLE001 - shut out: the node goes back to its previous rules
        raise RuntimeError(f"{props['host']}: no new SSH connection got through its new firewall "
                           f"({type(exc).__name__}), so the node loads its previous rules again by itself; "
                           "does haproxy-ha:cluster.adminNetworks hold the address pulumi connects from?") from exc
    code, out, err = run(fresh, "sh -s", props["scripts"][script])
    if code:
        raise RuntimeError(f"{props['host']}: {script} failed: {_said(err or out)}")
    return fresh


def _said(output: str) -> str:
    """What our scripts said (their `haproxy-ha[node]:` lines), redacted: never raw tool
    output, which could quote a config line holding a secret."""
    lines = [line for line in output.splitlines() if line.startswith("haproxy-ha[")]
    return redact_secrets("\n".join(lines[-3:]))[-1500:] or "no message; see the node's logs"


def _touches(step: dict[str, Any], drifted: list[str]) -> bool:
    """A step runs when one of its files or its service drifted."""
    subjects = {item.split(":", 1)[0] for item in drifted}
    return bool(subjects & {*step["files"], step["service"]})


def leave(props: dict[str, Any]) -> str:
    """The node leaves the cluster: it releases its VIPs (the leave script stops keepalived,
    whose priority-0 advert hands them on at once) before its machine is deleted, which would
    otherwise take them down with it until the others noticed. Only on the machine this state
    was read from: a node that presents another host key is a new machine at the old address
    (the old one was deleted behind Pulumi's back), and one that does not answer holds nothing
    it could hand on. Returns what happened, for the engine's log."""
    target = ssh.Target.from_props(props)
    try:
        client = _connect(props, attempts=2)
    except ssh.HostKeyMismatch:
        return f"{target.label}: another machine answers at its address; nothing to release"
    except Exception as exc:  # noqa: BLE001 - gone already: there is nothing left to hand on
        return f"{target.label}: unreachable ({type(exc).__name__}); nothing to release"
    try:
        code, out, err = run(client, "sh -s", props["scripts"]["leave"], timeout=60)
    finally:
        ssh.forget(target, client)
    if code:
        raise RuntimeError(f"{target.label}: could not release its VIPs before it goes: {_said(err or out)}")
    return _said(err) if err.strip() else f"{target.label} left"


# Outputs the provider computes (not inputs): a diff ignores them.
COMPUTED = ("drift", "vrrp", "addresses", "reachable", "__provider")


class NodeStateProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['host']}", outs=outputs(props, read_live(props)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=outputs(props, read_live(props)))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        drifted = bool(olds.get("drift"))
        changed = [k for k in news if k not in COMPUTED and olds.get(k) != news.get(k)]
        return DiffResult(changes=drifted or bool(changed), replaces=[], delete_before_replace=False,
                          stables=["host"])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        intact = restore(news)
        outs = outputs(news, intact or read_live(news))
        if outs["drift"]:  # restored, yet still not as desired: say so rather than succeed
            raise RuntimeError(f"{news['host']}: still drifted after the restore: {'; '.join(outs['drift'])}")
        return UpdateResult(outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # A state made before the leave script existed has none to run.
        if "leave" in (props.get("scripts") or {}):
            pulumi.log.info(leave(props))


class NodeState(pulumi.dynamic.Resource):
    """What is really on one node; drift shows in `drift`, `up` restores it."""

    drift: pulumi.Output[list[str]]
    vrrp: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(NodeStateProvider(), name, {**props, "drift": None, "vrrp": None, "addresses": None,
                                                     "reachable": None}, opts)


def encode(props: dict[str, Any]) -> str:
    return json.dumps(props, sort_keys=True)
