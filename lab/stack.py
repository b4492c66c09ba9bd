"""A lab stack under the real Pulumi engine: its config file, its secrets (set with `pulumi config
set --secret`), and `pulumi preview` / `up` / `destroy` run as a person runs them.

The `lab` stack's config is `Pulumi.lab.yaml`, made on the first `make lab` from the shipped
`lab/stacks/Pulumi.lab.yaml` (it then holds this machine's encrypted secrets, so it is not
tracked). Other lab stacks (the tests') keep their config file in their state folder and pass
it with `--config-file`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.config.errors import PROJECT
from components.labnode import lab_prefix, lan_gateways

from . import bastion, engine, engine_output, interrupted, labctl, tlsca
from .engine_output import Preview

SHIPPED = engine.PROJECT_DIR / "lab" / "stacks"


class LabError(RuntimeError):
    pass


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
        # Variables the engine (and its providers) run with, beyond the backend's.
        self.engine_env: dict[str, str] = {}

    def _user_config(self) -> dict[str, Any]:
        if not self.config_file.exists() and (SHIPPED / f"Pulumi.{self.stack}.yaml").exists():
            shutil.copyfile(SHIPPED / f"Pulumi.{self.stack}.yaml", self.config_file)
        if not self.config_file.exists():
            raise LabError(f"no stack file {self.config_file.name} (lab stacks: lab, lab-aa)")
        document = yaml.safe_load(self.config_file.read_text()) or {}
        return _plain(document.get("config") or {})

    # --- engine --------------------------------------------------------------------------------

    def pulumi(self, *args: str, check: bool = True, stdin: str | None = None, capture: bool = True):
        # `pulumi stack ...` and `cancel` take no --config-file; preview, up, refresh, destroy and config do.
        config = [] if args[0] in ("stack", "cancel") else ["--config-file", str(self.config_file)]
        # --event-log (what the Automation API reads) is one of the CLI's debug flags.
        debug = {"PULUMI_DEBUG_COMMANDS": "true"} if "--event-log" in args else {}
        return engine.pulumi(self.state_dir, *args, "--stack", self.stack, *config,
                             check=check, stdin=stdin, capture=capture, extra_env={**self.engine_env, **debug})

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def stats_password(self) -> str:
        return (self.state_dir / "stats-password").read_text().strip()

    def _ensure_stack(self) -> None:
        engine.prepare(self.state_dir)
        # `pulumi stack init` writes the stack's (empty) checkpoint in the file backend.
        if not any((self.state_dir / "backend" / ".pulumi" / "stacks").glob(f"*/{self.stack}.json")):
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
        jump = self.bastion_config()
        if self.user_stack:
            if overrides:
                raise LabError("the lab stack's config is Pulumi.lab.yaml: edit it instead")
            if merged[f"{PROJECT}:cluster"].get("bastion") != jump:
                for key, value in jump.items():
                    self.pulumi("config", "set", "--path", f"{PROJECT}:cluster.bastion.{key}", str(value))
            return merged
        merged[f"{PROJECT}:cluster"] = {**merged[f"{PROJECT}:cluster"], "bastion": jump}
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
        key = self._ssh_key()
        password = self.state_dir / "stats-password"
        if not password.exists():
            password.write_text(secrets.token_urlsafe(12) + "\n")
            password.chmod(0o600)
        if self.user_stack and f"{PROJECT}:sshPublicKey" not in self.base_config:
            self.pulumi("config", "set", f"{PROJECT}:sshPublicKey", config[f"{PROJECT}:sshPublicKey"])
        wanted = {f"{PROJECT}:sshPrivateKey": key.read_text(), f"{PROJECT}:statsPassword": self.stats_password,
                  **self.more_secrets()}
        for name, bundle in tlsca.lab_certificates(self.tls_dir, self.stack, config).items():
            wanted[f"{PROJECT}:tlsCertificates.{name}"] = bundle
        # What the last run set, in the stack file as it then was: nothing to decrypt and compare.
        stamp = self.state_dir / "secrets-set"

        def mark() -> str:
            text = self.config_file.read_bytes() + json.dumps(wanted, sort_keys=True).encode()
            return hashlib.sha256(text).hexdigest()

        if stamp.exists() and stamp.read_text() == mark():
            return
        have = self._secure_keys()
        for full, value in wanted.items():
            # `pulumi config set` drops one trailing newline from stdin.
            if full in have and have[full] in (value, value.removesuffix("\n")):
                continue
            args = ["config", "set", "--secret", *(["--path"] if "." in full.split(":", 1)[1] else []), full]
            self.pulumi(*args, stdin=value)
        stamp.write_text(mark())

    def more_secrets(self) -> dict[str, str]:
        """Secrets beyond the lab's own (full key -> value): the sim's API tokens."""
        return {}

    def bastion_config(self) -> dict[str, Any]:
        """cluster.bastion for this stack: the lab's jump host behind its loopback forward (a
        port chosen once per stack, and a host key made once, so both stay put)."""
        folder = self.state_dir / "bastion"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key, port = folder / "ssh_host_ed25519_key", folder / "port"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"haproxy-ha-{self.stack}-bastion",
                            "-f", str(key)], check=True)
        if not port.exists():
            port.write_text(f"{bastion.free_port()}\n")
        host_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        return {"host": "127.0.0.1", "port": int(port.read_text()), "hostKey": host_key}

    def _lan_up(self, spec) -> None:
        """The LAN and the bastion the nodes will be reached through, as a user has them before
        their first `pulumi up`."""
        bastion.up(self.prefix, *lan_gateways(spec.cluster), self.bastion_config()["port"],
                   self.state_dir / "bastion" / "ssh_host_ed25519_key",
                   self._ssh_key().with_suffix(".pub").read_text())

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

        spec = load_stack({**self.base_config, **(overrides or {})})
        self._ensure_stack()
        config = self._write_config(overrides)
        self._set_secrets(config)
        self._lan_up(spec)
        interrupted.recover(self)

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
        executed, failures = engine_output.executed(events), engine_output.failures(events)
        events.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise LabError(f"pulumi up failed:\n{failures or engine_output.errors(proc.stdout + proc.stderr)}")
        return Outcome(self.outputs(), executed)

    def up_on_terminal(self) -> bool:
        """`pulumi up` as a person runs it: the engine's own progress and diagnostics on this
        terminal (`pulumi preview` shows the plan first; here the update says each change as it
        makes it). True when it succeeded."""
        self.configure()
        return self.pulumi("up", "--yes", "--skip-preview", check=False, capture=False).returncode == 0

    def outputs(self) -> dict[str, Any]:
        proc = self.pulumi("stack", "output", "--json", "--show-secrets", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}

    def urns(self, pattern: str) -> list[str]:
        """The URNs of this stack's resources whose name contains `pattern` (for `--replace`)."""
        found = [r["urn"] for r in self.resources() if pattern in engine_output.name_of(r["urn"])
                 and not r["type"].startswith(("haproxy-ha:index:", "pulumi:pulumi:", "pulumi:providers:"))]
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
                said = engine_output.errors(proc.stdout + proc.stderr)
                self.log(f"pulumi destroy failed (cleaning up anyway):\n{said}")
        self.before_net_down()
        labctl.net_down(self.prefix)
        self.remove_state()
        self.log(f"lab {self.stack}: down")

    def before_net_down(self) -> None:
        """What must stop before the lab's namespaces go (the sim's PVE)."""

    def remove_state(self) -> None:
        """This stack's state folder, its generated stack file, and the lab's folders when no
        other lab is left."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shipped = SHIPPED / f"Pulumi.{self.stack}.yaml"
        if self.user_stack and shipped.exists() and self.config_file.exists():
            document = yaml.safe_load(self.config_file.read_text()) or {}
            plain = _plain(document.get("config") or {})
            plain.pop(f"{PROJECT}:sshPublicKey", None)  # the lab set it; the next lab makes a new key
            plain.get(f"{PROJECT}:cluster", {}).pop("bastion", None)  # and this, for its own bastion
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


def missing_packages() -> list[str]:
    """Packages the nodes' install step expects; lab nodes share this machine's /usr."""
    from components.model.model import PACKAGES

    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *PACKAGES], capture_output=True, text=True)
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [package for package in PACKAGES if package not in installed]
