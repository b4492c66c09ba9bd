"""HostKey: a node's SSH host key, recorded in the stack state at the first contact.

Trust on first use: `create` reads the key the new machine presents (a key exchange, no login,
nothing sent) and keeps it; every later connection (each remote.Command, each NodeState read and
restore) verifies it before anything goes out. A refresh never re-reads it. The key
changes only when this resource is replaced: automatically with its machine (a new VM, a new lab
node), or on purpose with `pulumi up --replace <its URN>` after a rotation.
"""

from __future__ import annotations

import uuid
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from . import ssh


class HostKeyProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        target = ssh.Target.from_props(props)
        key = ssh.presented_key(target)
        outs = {**props, "publicKey": key, "fingerprint": ssh.fingerprint(ssh.parse_public_key(key))}
        return CreateResult(id_=uuid.uuid4().hex, outs=outs)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Only a new machine (its id among the triggers) is met anew; anything else keeps the key.
        replaces = ["triggers"] if olds.get("triggers") != news.get("triggers") else []
        changed = replaces or [k for k in ("host", "port", "bastion", "dialAttempts", "node")
                               if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """The same machine at a new address: it must present the recorded key there too."""
        if (olds.get("host"), olds.get("port")) != (news.get("host"), news.get("port")):
            presented = ssh.presented_key(ssh.Target.from_props(news))
            if presented.split()[:2] != olds["publicKey"].split()[:2]:
                raise ssh.HostKeyMismatch(
                    f"{news['node']} ({news['host']}): host key changed: expected {olds['fingerprint']}, presented "
                    f"{ssh.fingerprint(ssh.parse_public_key(presented))} at its new address; nothing was sent")
        return UpdateResult(outs={**news, "publicKey": olds["publicKey"], "fingerprint": olds["fingerprint"]})


class HostKey(pulumi.dynamic.Resource):
    """The host key `node` presented at `host:port` the first time; `publicKey`, `fingerprint`."""

    publicKey: pulumi.Output[str]  # noqa: N815 - the output's name in the state
    fingerprint: pulumi.Output[str]

    def __init__(self, name: str, *, node: str, host: str, port: int, bastion: dict | None = None,
                 private_key: pulumi.Input[str] | None = None, dial_attempts: int = 10,
                 triggers: list[pulumi.Input[Any]] | None = None, opts: pulumi.ResourceOptions | None = None):
        # The private key logs in to the bastion only; the node itself is met without a login.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["privateKey"]))
        props = {"node": node, "host": host, "port": port, "bastion": bastion,
                 "privateKey": pulumi.Output.secret(private_key) if bastion and private_key else None,
                 "dialAttempts": dial_attempts, "triggers": triggers or [], "publicKey": None, "fingerprint": None}
        super().__init__(HostKeyProvider(), name, props, opts)
