"""What the Pulumi CLI says, read back: a preview's steps (`--json`), the resources an update
acted on and the errors it reported (its `--event-log`), and its Diagnostics as text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Preview:
    """What `pulumi preview --json` said: each step's op and the resource's name."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)

    def ops(self) -> dict[str, str]:
        """resource name -> op, for every step that changes something (not same, read, refresh)."""
        return {name_of(s["urn"]): s["op"] for s in self.steps if s["op"] not in ("same", "read", "refresh")}

    def drift(self) -> dict[str, list[str]]:
        """node -> what its NodeState read found different (the refresh before the preview): the
        refreshed outputs, which the engine reports as the old state of the step that follows."""
        out: dict[str, list[str]] = {}
        for s in self.steps:
            name = name_of(s["urn"])
            if not name.endswith("-state"):
                continue
            node = name.removeprefix("haproxy-ha-").removesuffix("-state")
            found = [list(((s.get(k) or {}).get("outputs") or {}).get("drift") or []) for k in ("newState", "oldState")]
            if s["op"] != "refresh" or node not in out:
                out[node] = next((d for d in found if d), found[1] if s["op"] != "refresh" else [])
        return out


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


# Engine step ops that did something to a resource.
ACTED = {"create", "update", "replace", "create-replacement", "delete-replaced", "delete"}


def executed(events: Path) -> list[str]:
    """The names of the resources the engine acted on, from its event log (`--event-log`)."""
    names: list[str] = []
    if not events.exists():
        return names
    for line in events.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        done = event.get("resOutputsEvent")
        if not done:
            continue
        meta = done.get("metadata") or {}
        name = meta.get("urn", "").rsplit("::", 1)[-1]
        component = meta.get("type", "").startswith(("pulumi:pulumi:Stack", "haproxy-ha:index:"))
        if meta.get("op") in ACTED and not component and name not in names:
            names.append(name)
    return names


def failures(events: Path) -> str:
    """`NAME: message` for each resource the engine reported an error on (its event log)."""
    found: list[str] = []
    for line in events.read_text().splitlines() if events.exists() else ():
        try:
            diag = json.loads(line).get("diagnosticEvent")
        except json.JSONDecodeError:
            continue
        if not diag or diag.get("severity") != "error" or not diag.get("urn"):
            continue
        message = diag.get("message", "")
        ran = re.match(r'(?:error: )?Process exited with status (\d+): running "[^"]*":\n?(.*)', message, re.S)
        if ran:  # a command's error: what our scripts said, else the tail of its output
            entry = f"{name_of(diag['urn'])}: exit status {ran.group(1)}: {_said(ran.group(2))}"
        elif "Traceback" in message:  # a provider's exception: its last line is what it said
            text = f"  {name_of(diag['urn'])} (x):\n" + "\n".join("    " + x for x in message.splitlines())
            entry = errors("Diagnostics:\n" + text)
        else:  # the program's own error (a config error names its key), or the engine's
            entry = f"{name_of(diag['urn'])}: {message.strip().removeprefix('error: ')}"
        if entry not in found:
            found.append(entry)
    return "\n".join(found)


def _said(output: str) -> str:
    """A failed script's own words: from its `haproxy-ha[node]: ERROR:` line to the end (a
    daemon's output it quotes follows on the next lines), else its last three `haproxy-ha[node]:`
    lines, else the tail of what it printed."""
    lines = output.strip().splitlines()
    errors_at = [i for i, line in enumerate(lines) if line.startswith("haproxy-ha[") and ": ERROR: " in line]
    if errors_at:
        return "\n".join(lines[errors_at[-1]:])[-1500:]
    said = [line for line in lines if line.startswith("haproxy-ha[")]
    return "\n".join(said[-3:]) or "\n".join(lines)[-1500:]


def errors(text: str) -> str:
    """One line per failed resource, `NAME: message`, from the engine's Diagnostics: a Python
    provider's error arrives as a traceback whose last line is the exception's message."""
    lines = text.splitlines()
    if "Diagnostics:" in lines:
        lines = lines[lines.index("Diagnostics:") + 1:]
    found: list[str] = []
    resource, message, collecting = "", [], False

    def flush() -> None:
        if resource and message:
            found.append(f"{resource}: " + "\n".join(message).strip())

    for line in lines:
        if line and not line[0].isspace():
            break  # the next section (Outputs, Resources, Duration): the diagnostics are over
        block = re.match(r"^  (\S+) \((.+)\):$", line)
        if block:
            flush()
            # The engine's Diagnostics name the resource in brackets; ours put it first.
            resource, message, collecting = block.group(2) if block.group(2) != "x" else block.group(1), [], False
            continue
        # The traceback's last line: `module.ClassName: message` (or a builtin `...Error: message`).
        raised = re.match(r"^\s+((?:\w+\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception)): (.*)$", line)
        if raised and not line.strip().startswith("error:"):
            message, collecting = [raised.group(2)], True  # the last exception of the traceback
        elif collecting and line.strip():
            message.append(line.strip())  # its message goes on over several lines
        elif line.strip().startswith("error:") and not message:
            message = [line.strip().removeprefix("error:").strip()]
    flush()
    return "\n".join(found) or "\n".join(lines[-40:])
