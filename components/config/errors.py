"""Config errors: one line naming the key path and the reason."""

from __future__ import annotations

import json
from typing import Any

PROJECT = "haproxy-ha"


class ConfigError(ValueError):
    """One clear message: the config key path and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class KeyError_(ValueError):
    """Raised inside validators with a location relative to the model being validated."""

    def __init__(self, loc: tuple[Any, ...], reason: str):
        super().__init__(reason)
        self.loc = loc
        self.reason = reason


def unique(items, what: str, key, prefix: tuple[Any, ...] = ("nodes",)) -> None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        value = key(item)
        if value in seen:
            raise KeyError_(
                (*prefix, i, what), f"{value} duplicates {prefix[-1]}[{seen[value]}].{what}"
            )
        seen[value] = i


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def secret_mapping(raw: Any, key: str, what: str, example: str) -> dict[str, str]:
    """A secret mapping set with `pulumi config set --secret --path 'KEY.<name>' ...` (the runtime
    hands it over as a JSON string): name -> text. Errors never quote a value."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(key, f"must be a mapping {what} (set each with "
                              f"`pulumi config set --secret --path '{key}.<name>' {example}`)") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(key, f"must be a mapping {what}")
    return {str(k): v for k, v in raw.items()}
