"""Step: one command the program runs, on a node over SSH or on this machine, as a Pulumi resource.

The engine decides when a step runs, from this provider's diff:
- a change of `triggers` replaces the step: the new one runs `create`, then the old one's
  `delete` runs (create-before-delete, unless the resource asks for delete-before-replace);
- a change of `create`, `update` or `stdin` runs `update` (or `create` again);
- a change of the connection alone (a new key, a new address), of `dir` or of `delete` is
  recorded and runs nothing;
- `delete` runs when the step leaves the program (or is replaced).

It runs in the engine's dynamic-provider process (`pulumi-resource-pulumi-python`), which
imports this module by reference: the program folder must be importable there.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from ..files.render import redact_secrets
from . import ssh

# What a step runs; a change of any of these runs it again.
RUNS = ("create", "update", "stdin")
# Recorded when they change, running nothing: how to reach the node, where a local command runs,
# what `delete` will run.
RECORDED = ("connection", "timeout", "dir", "delete", "deleteBeforeReplace")
# The tail of a failed command's stderr that the error quotes (redacted).
TAIL = 3000


class StepError(Exception):
    pass


def _execute(props: dict[str, Any], command: str) -> None:
    stdin = props.get("stdin") or ""
    conn = props.get("connection")
    if conn:
        target = ssh.Target.from_props(conn)
        try:
            client = ssh.shared(target)
        except ssh.HostKeyMismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - the message says what failed
            raise StepError(f"{target.label}: {exc}") from None
        try:
            code, out, err = ssh.run(client, command, stdin, timeout=float(props.get("timeout") or 900))
        except (OSError, EOFError) as exc:  # the connection broke: not reused
            ssh.forget(target, client)
            raise StepError(f"{target.label}: the connection broke: {type(exc).__name__}: {exc}") from None
        where = target.label
    else:
        proc = subprocess.run(["sh", "-c", command], cwd=props.get("dir") or None, input=stdin,
                              capture_output=True, text=True, timeout=float(props.get("timeout") or 900))
        code, out, err, where = proc.returncode, proc.stdout, proc.stderr, "local"
    if code != 0:
        detail = redact_secrets((err or out).strip())[-TAIL:]
        raise StepError(f"{where}: exit status {code}: {detail}")


class StepProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        _execute(props, props["create"])
        # A fresh id per create: steps triggered by this one (a new machine) see it change.
        return CreateResult(id_=uuid.uuid4().hex, outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["triggers"] if olds.get("triggers") != news.get("triggers") else []
        changed = [k for k in (*RUNS, *RECORDED) if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces or changed), replaces=replaces,
                          delete_before_replace=bool(news.get("deleteBeforeReplace")))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if any(olds.get(k) != news.get(k) for k in RUNS):
            _execute(news, news.get("update") or news["create"])
        return UpdateResult(outs=news)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("delete"):
            _execute(props, props["delete"])


class Step(pulumi.dynamic.Resource):
    """A command run by the engine: over SSH when `connection` is given, else on this machine."""

    def __init__(self, name: str, *, create: pulumi.Input[str], connection: pulumi.Input[dict] | None = None,
                 stdin: pulumi.Input[str] | None = None, update: str | None = None, delete: str | None = None,
                 dir: str | None = None, triggers: list[pulumi.Input[Any]] | None = None,
                 delete_before_replace: bool = False, opts: pulumi.ResourceOptions | None = None):
        props = {"create": create, "update": update, "delete": delete, "stdin": stdin, "dir": dir,
                 "connection": connection, "triggers": triggers or [], "deleteBeforeReplace": delete_before_replace,
                 "timeout": None}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=delete_before_replace))
        super().__init__(StepProvider(), name, props, opts)


def ssh_connection(node: str, host: str, port: int, private_key: pulumi.Input[str], host_key: pulumi.Input[str],
                   host_key_urn: pulumi.Input[str], proxy_command: str = "", dial_attempts: int = 10
                   ) -> pulumi.Output[dict]:
    """A step's connection: secret as a whole, since it holds the private key; the node's
    recorded host key is verified before anything is sent."""
    return pulumi.Output.secret({"node": node, "host": host, "port": port, "user": "root", "privateKey": private_key,
                                 "hostKey": host_key, "hostKeyUrn": host_key_urn, "proxyCommand": proxy_command,
                                 "dialAttempts": dial_attempts})
