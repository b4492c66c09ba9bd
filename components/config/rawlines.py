"""The escape hatch's raw HAProxy lines: what may go verbatim into a frontend, a backend or a
section of its own, and what may not (whatever would reach into the parts we own)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# A line starting one of these opens a new section: inside `extra` it would end the user's
# section and start one of ours (or a second `global`/`defaults` that overrides ours).
SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "resolvers",
    "cache", "http-errors", "ring", "mailers", "program", "crt-store", "traces", "log-forward",
    "fcgi-app",
})
# Sections a user may add whole (haproxy.extraSections); proxies are typed (frontends, backends).
EXTRA_SECTIONS = ("userlist", "cache", "peers", "resolvers", "http-errors", "ring", "mailers")
# In a frontend or backend these are ours: `bind` (the ports keepalived's health gate and the
# rollout wait for), `mode` (the typed key), `log` (logging goes to the node's rsyslog).
OWNED_DIRECTIVES = {
    "bind": "listeners are typed: add a frontend (its bind) instead",
    "mode": "set the typed key `mode`",
    "log": "logging is ours (every section logs to the node's rsyslog)",
}


def _line(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("one line only (no newline or NUL); add one list item per line")
    if not value.strip():
        raise ValueError("is empty")
    if len(value) > 2000:
        raise ValueError(f"is {len(value)} characters; HAProxy reads lines of at most 2048")
    word = value.split()[0]
    if word.startswith("."):
        raise ValueError(f"{word}: conditional blocks and directives (`.if`, `.notice`...) are not "
                         "allowed here; they could span our sections")
    if word.lower() in SECTION_KEYWORDS:
        raise ValueError(f"`{word}` starts a new section and would end this one; whole sections go "
                         "in haproxy.extraSections")
    return value.strip()


RawLine = Annotated[str, AfterValidator(_line)]


def _proxy_line(value: str) -> str:
    words = value.split()
    word, shown = words[0].lower(), words[0]
    if word == "no" and len(words) > 1 and words[1].lower() == "log":
        word, shown = "log", " ".join(words[:2])
    if word in OWNED_DIRECTIVES:
        raise ValueError(f"`{shown}` cannot go in extra: {OWNED_DIRECTIVES[word]}")
    return value


ProxyLine = Annotated[RawLine, AfterValidator(_proxy_line)]


def _section(value: str) -> str:
    lines = [line for line in value.splitlines() if line.strip()]
    if not lines:
        raise ValueError("is empty; give a whole section: its header line, then its lines")
    header = lines[0].split()
    if header[0] not in EXTRA_SECTIONS:
        raise ValueError(f"starts with `{lines[0].strip()}`: an extra section is one of "
                         f"{', '.join(EXTRA_SECTIONS)} (global, defaults and the proxies are ours or typed)")
    if len(header) < 2:
        raise ValueError(f"`{header[0]}` needs a name")
    for number, line in enumerate(lines[1:], start=2):
        try:
            _line(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return "\n".join(line.rstrip() for line in lines)


ExtraSection = Annotated[str, StringConstraints(max_length=100_000), AfterValidator(_section)]
