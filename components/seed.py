"""SecretSeed: random bytes made once and kept (secret) in the stack state.

What `random.RandomBytes` did, without a provider plugin of its own (pulumi-random cannot be
built from the Go module proxy): the bytes come from the OS's CSPRNG when the resource is
created, never change on a later update, and change only when the resource is replaced.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider


class SecretSeedProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        value = base64.b64encode(secrets.token_bytes(int(props["length"]))).decode()
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "base64": value})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("length") != news.get("length")
        return DiffResult(changes=changed, replaces=["length"] if changed else [])


class SecretSeed(pulumi.dynamic.Resource):
    """`length` random bytes, base64 in the secret output `base64`."""

    base64: pulumi.Output[str]

    def __init__(self, name: str, length: int, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["base64"]))
        super().__init__(SecretSeedProvider(), name, {"length": length, "base64": None}, opts)
