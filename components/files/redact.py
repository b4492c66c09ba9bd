"""Secrets masked in text that may quote a config line. Stdlib only: the dynamic providers
import it, and their process should not pay for the renderer's imports."""

from __future__ import annotations

import re

_SECRET_LINES = (
    re.compile(r"^(\s*user \S+ password )\S+$", re.M),  # HAProxy userlist hash
    re.compile(r"^(\s*auth_pass )\S+$", re.M),  # keepalived PASS auth
)


def redact(text: str) -> str:
    for pattern in _SECRET_LINES:
        text = pattern.sub(r"\1<redacted>", text)
    return text


def redact_secrets(text: str) -> str:
    """Any text that may quote a config line: our secret lines and every crypt hash masked."""
    return re.sub(r"\$[0-9a-z]+\$\S+", "<redacted>", redact(text))
