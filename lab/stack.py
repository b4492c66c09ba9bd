"""A lab stack under the real Pulumi engine: its config file, its secrets (set with `pulumi config
set --secret`), and `pulumi preview` / `up` / `destroy` run as a person runs them.

The `lab` stack's config is `Pulumi.lab.yaml`, made on the first `make lab` from the shipped
`lab/stacks/Pulumi.lab.yaml` (it then holds this machine's encrypted secrets, so it is not
tracked). Other lab stacks (the tests') keep their config file in their state folder and pass
it with `--config-file`.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.config.errors import PROJECT
from components.labnode import lab_prefix

from . import engine, labctl, tlsca

SHIPPED = engine.PROJECT_DIR / "lab" / "stacks"


class LabError(RuntimeError):
    pass


@dataclass
class Preview:
    """What `pulumi preview --json` said: each step's op and the resource's name."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)

    def ops(self) -> dict[str, str]:
        """resource name -> op, for every step that changes something (not same, read, refresh)."""
        return {_name(s["urn"]): s["op"] for s in self.steps if s["op"] not in ("same", "read", "refresh")}

    def drift(self) -> dict[str, list[str]]:
        """node -> what its NodeState read found different (the refresh before the preview): the
        refreshed outputs, which the engine reports as the old state of the step that follows."""
        out: dict[str, list[str]] = {}
        for s in self.steps:
            name = _name(s["urn"])
            if not name.endswith("-state"):
                continue
            node = name.removeprefix("haproxy-ha-").removesuffix("-state")
            found = [list(((s.get(k) or {}).get("outputs") or {}).get("drift") or []) for k in ("newState", "oldState")]
            if s["op"] != "refresh" or node not in out:
                out[node] = next((d for d in found if d), found[1] if s["op"] != "refresh" else [])
        return out


@dataclass
class Outcome:
    outputs: dict[str, Any]
    # Names of the resources the engine created, updated, replaced or deleted (its event log).
    executed: list[str] = field(default_factory=list)


class Lab:
    """One lab stack: its state folder (backend, passphrase, SSH key, CA), config and engine runs."""

    def __init__(self, stack: str = "lab", config: dict[str, Any] | None = None, log: Callable[[str], None] = print):
        self.stack = stack
        self.prefix = lab_prefix(stack)
        self.state_dir = labctl.LAB_ROOT / "stacks" / stack
        self.log = log
        # The user's `lab` stack uses Pulumi.lab.yaml in the project; a test's stack its own file.
        self.user_stack = config is None
        self.config_file = (engine.PROJECT_DIR / f"Pulumi.{stack}.yaml" if self.user_stack
                            else self.state_dir / f"Pulumi.{stack}.yaml")
        self.base_config = config if config is not None else self._user_config()

    def _user_config(self) -> dict[str, Any]:
        if not self.config_file.exists() and (SHIPPED / f"Pulumi.{self.stack}.yaml").exists():
            shutil.copyfile(SHIPPED / f"Pulumi.{self.stack}.yaml", self.config_file)
        if not self.config_file.exists():
            raise LabError(f"no stack file {self.config_file.name} (lab stacks: lab, lab-aa)")
        document = yaml.safe_load(self.config_file.read_text()) or {}
        return _plain(document.get("config") or {})

    # --- engine --------------------------------------------------------------------------------

    def pulumi(self, *args: str, check: bool = True, stdin: str | None = None, capture: bool = True):
        # `pulumi stack ...` takes no --config-file; preview, up, refresh, destroy and config do.
        config = [] if args[0] == "stack" else ["--config-file", str(self.config_file)]
        # --event-log (what the Automation API reads) is one of the CLI's debug flags.
        debug = {"PULUMI_DEBUG_COMMANDS": "true"} if "--event-log" in args else None
        return engine.pulumi(self.state_dir, *args, "--stack", self.stack, *config,
                             check=check, stdin=stdin, capture=capture, extra_env=debug)

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def stats_password(self) -> str:
        return (self.state_dir / "stats-password").read_text().strip()

    def _ensure_stack(self) -> None:
        engine.prepare(self.state_dir)
        if not (self.state_dir / "backend" / ".pulumi" / "stacks").exists() or \
                self.pulumi("stack", "ls", "--json", check=False).stdout.find(f'"{self.stack}"') < 0:
            engine.pulumi(self.state_dir, "stack", "init", self.stack)
            self._adopt_salt()

    def _adopt_salt(self) -> None:
        """`pulumi stack init` writes the passphrase's salt to Pulumi.<stack>.yaml in the project
        (it takes no --config-file): a test stack moves it into its own config file."""
        made = engine.PROJECT_DIR / f"Pulumi.{self.stack}.yaml"
        if made == self.config_file or not made.exists():
            return
        salt = (yaml.safe_load(made.read_text()) or {}).get("encryptionsalt")
        document = yaml.safe_load(self.config_file.read_text()) or {} if self.config_file.exists() else {}
        if salt:
            document["encryptionsalt"] = salt
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=True))
        made.unlink()

    def _write_config(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        """A test stack's plain config (base + overrides) in its own file, keeping what `pulumi
        config set --secret` stored there. The user's Pulumi.lab.yaml is never rewritten."""
        merged = {**self.base_config, **(overrides or {})}
        merged.setdefault(f"{PROJECT}:sshPublicKey", self._ssh_key().with_suffix(".pub").read_text().strip())
        if self.user_stack:
            if overrides:
                raise LabError("the lab stack's config is Pulumi.lab.yaml: edit it instead")
            return merged
        document: dict[str, Any] = {}
        if self.config_file.exists():
            document = yaml.safe_load(self.config_file.read_text()) or {}
        # What `pulumi config set --secret` and `stack init` stored there stays: the salt, the secrets.
        kept = {k: v for k, v in (document.get("config") or {}).items() if k not in _plain({k: v})}
        document["config"] = {**merged, **kept}
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=True))
        return merged

    def _set_secrets(self, config: dict[str, Any]) -> None:
        """The lab's secrets, set as a user sets them: `pulumi config set --secret` (once each)."""
        have = self._secure_keys()
        key = self._ssh_key()
        password = self.state_dir / "stats-password"
        if not password.exists():
            password.write_text(secrets.token_urlsafe(12) + "\n")
            password.chmod(0o600)
        if self.user_stack and f"{PROJECT}:sshPublicKey" not in self.base_config:
            self.pulumi("config", "set", f"{PROJECT}:sshPublicKey", config[f"{PROJECT}:sshPublicKey"])
        wanted = {f"{PROJECT}:sshPrivateKey": key.read_text(), f"{PROJECT}:statsPassword": self.stats_password}
        for name, bundle in tlsca.lab_certificates(self.tls_dir, self.stack, config).items():
            wanted[f"{PROJECT}:tlsCertificates.{name}"] = bundle
        for full, value in wanted.items():
            # `pulumi config set` drops one trailing newline from stdin.
            if full in have and have[full] in (value, value.removesuffix("\n")):
                continue
            args = ["config", "set", "--secret", *(["--path"] if "." in full.split(":", 1)[1] else []), full]
            self.pulumi(*args, stdin=value)

    def _ssh_key(self) -> Path:
        key = self.state_dir / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"haproxy-ha-{self.stack}",
                            "-f", str(key)], check=True)
        return key

    def _secure_keys(self) -> dict[str, str]:
        """The secrets already in the config file, decrypted (key path -> value)."""
        if not self.config_file.exists() or "secure:" not in self.config_file.read_text():
            return {}
        out = json.loads(self.pulumi("config", "--json", "--show-secrets").stdout or "{}")
        flat: dict[str, str] = {}
        for key, entry in out.items():
            value = entry.get("value")
            if isinstance(value, str) and entry.get("objectValue") is None:
                flat[key] = value
            nested = entry.get("objectValue")
            for sub, v in (nested.items() if isinstance(nested, dict) else ()):
                flat[f"{key}.{sub}"] = v
        return flat

    def configure(self, overrides: dict[str, Any] | None = None) -> None:
        """Check the config (one error naming the key, before anything exists), then the stack,
        its config file and its secrets."""
        from components.config.schema import load_stack

        load_stack({**self.base_config, **(overrides or {})})
        self._ensure_stack()
        config = self._write_config(overrides)
        self._set_secrets(config)

    def applied(self) -> bool:
        """Whether an update of this stack ever ran (its backend holds a checkpoint)."""
        return any((self.state_dir / "backend").glob(".pulumi/stacks/**/*.json"))

    # --- what a person types -------------------------------------------------------------------

    def preview(self, config: dict[str, Any] | None = None, diff: bool = False,
                expect_no_changes: bool = False) -> Preview:
        """`pulumi preview` (refresh included, as Pulumi.yaml asks): the steps it would take."""
        self.configure(config)
        args = ["preview", "--json", *(["--diff"] if diff else []),
                *(["--expect-no-changes"] if expect_no_changes else [])]
        proc = self.pulumi(*args, check=False)
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise LabError(f"pulumi preview failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}") from None
        result = Preview(data.get("steps") or [], data.get("diagnostics") or [])
        if proc.returncode != 0:
            errors = [d.get("message", "") for d in result.diagnostics if d.get("severity") == "error"]
            raise LabError("pulumi preview failed: " + ("\n".join(errors) or proc.stderr[-2000:]))
        return result

    def preview_text(self, config: dict[str, Any] | None = None, diff: bool = True) -> str:
        """`pulumi preview --diff` as a person reads it."""
        self.configure(config)
        return self.pulumi("preview", *(["--diff"] if diff else []), check=False).stdout

    def up(self, config: dict[str, Any] | None = None, replace: tuple[str, ...] = (), refresh: bool = True) -> Outcome:
        missing = missing_packages()
        if missing:  # a node would install them with apt into the host's /usr: refuse instead
            raise LabError(f"the lab needs these Debian packages on this machine: {' '.join(missing)} "
                           "(make setup installs them)")
        self.configure(config)
        urns = [urn for pattern in replace for urn in self.urns(pattern)]
        events = self.state_dir / "events.jsonl"
        events.unlink(missing_ok=True)
        args = ["up", "--yes", "--skip-preview", "--event-log", str(events), *([] if refresh else ["--refresh=false"]),
                *[a for urn in urns for a in ("--replace", urn)]]
        proc = self.pulumi(*args, check=False)
        executed, failures = _executed(events), _failures(events)
        events.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise LabError(f"pulumi up failed:\n{failures or _errors(proc.stdout + proc.stderr)}")
        return Outcome(self.outputs(), executed)

    def outputs(self) -> dict[str, Any]:
        proc = self.pulumi("stack", "output", "--json", "--show-secrets", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}

    def urns(self, pattern: str) -> list[str]:
        """The URNs of this stack's resources whose name contains `pattern` (for `--replace`)."""
        found = [r["urn"] for r in self.resources()
                 if pattern in _name(r["urn"]) and r["type"] == "pulumi-python:dynamic:Resource"]
        if not found:
            raise LabError(f"no resource named like {pattern} in stack {self.stack}")
        return found

    def resources(self) -> list[dict[str, Any]]:
        """The stack's resources as the state holds them (secrets shown)."""
        state = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)
        return state["deployment"].get("resources") or []

    def down(self) -> None:
        """`pulumi destroy`, then whatever of the lab is left (namespaces, the state folder)."""
        if (self.state_dir / "backend").exists():
            proc = self.pulumi("destroy", "--yes", "--skip-preview", check=False)
            if proc.returncode != 0:
                self.log(f"pulumi destroy failed (cleaning up anyway):\n{_errors(proc.stdout + proc.stderr)}")
        labctl.net_down(self.prefix)
        self.remove_state()
        self.log(f"lab {self.stack}: down")

    def remove_state(self) -> None:
        """This stack's state folder, its generated stack file, and the lab's folders when no
        other lab is left."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shipped = SHIPPED / f"Pulumi.{self.stack}.yaml"
        if self.user_stack and shipped.exists() and self.config_file.exists():
            document = yaml.safe_load(self.config_file.read_text()) or {}
            plain = _plain(document.get("config") or {})
            plain.pop(f"{PROJECT}:sshPublicKey", None)  # the lab set it; the next lab makes a new key
            if plain == yaml.safe_load(shipped.read_text())["config"]:
                self.config_file.unlink()
            else:  # edited by hand: keep the edits; its secrets went with the passphrase
                document.pop("encryptionsalt", None)
                document["config"] = plain
                self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
                self.log(f"kept your edited {self.config_file.name} (without the lab's secrets)")
        for empty in (self.state_dir.parent, labctl.LAB_ROOT):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()

    # --- looking at the lab --------------------------------------------------------------------

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def node_ns(self, address: str) -> str:
        from components.config.schema import load_stack
        from components.labnode import host_slot
        from components.model.model import Cluster, Secrets

        cluster = Cluster(self.stack, load_stack(self.base_config), Secrets("x" * 8))
        return self.ns("n" + host_slot(cluster, address))

    def vip_holders(self, vip: str, addresses: dict[str, str]) -> list[str]:
        holders = []
        for name, address in addresses.items():
            out = subprocess.run(["ip", "-n", self.node_ns(address), "-o", "addr", "show", "dev", "eth0"],
                                 capture_output=True, text=True).stdout
            if f" {vip}/" in out:
                holders.append(name)
        return holders

    def ssh_argv(self, address: str) -> list[str]:
        """A person's SSH session to a node, from the lab's client namespace, verifying the host
        keys the stack recorded (`pulumi stack output hostKeys`)."""
        out = self.outputs()
        known = self.state_dir / "known_hosts"
        known.write_text("".join(f"{out['nodes'][n]} {key}\n" for n, key in sorted(out.get("hostKeys", {}).items())))
        return ["ip", "netns", "exec", self.ns("cl"), "ssh", "-i", str(self.state_dir / "id_ed25519"),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                "-o", "LogLevel=ERROR", f"root@{address}"]


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


# Engine step ops that did something to a resource.
ACTED = {"create", "update", "replace", "create-replacement", "delete-replaced", "delete"}


def _executed(events: Path) -> list[str]:
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


def _failures(events: Path) -> str:
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
        if "Traceback" in message:  # a provider's exception: its last line is what it said
            text = f"  {_name(diag['urn'])} (x):\n" + "\n".join("    " + x for x in message.splitlines())
            entry = _errors("Diagnostics:\n" + text)
        else:  # the program's own error (a config error names its key), or the engine's
            entry = f"{_name(diag['urn'])}: {message.strip().removeprefix('error: ')}"
        if entry not in found:
            found.append(entry)
    return "\n".join(found)


def _secure(value: Any) -> bool:
    return isinstance(value, dict) and "secure" in value


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """A stack file's config without its encrypted values (also those set with --path)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if _secure(value):
            continue
        if isinstance(value, dict) and any(_secure(v) for v in value.values()):
            value = {k: v for k, v in value.items() if not _secure(v)}
            if not value:
                continue
        out[key] = value
    return out


def _errors(text: str) -> str:
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


def missing_packages() -> list[str]:
    """Packages the nodes' install step expects; lab nodes share this machine's /usr."""
    from components.model.model import PACKAGES

    out = []
    for package in PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            out.append(package)
    return out
