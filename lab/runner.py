"""The replay runner: a test and demo tool, not a replacement for the Pulumi engine.

It runs the program under mocks with a stack config, plans against what it applied last time
(unchanged -> skip, triggers changed -> replace, other inputs changed -> update), prints the
plan like `pulumi preview`, then executes the declared commands for real in dependency order:
`local.Command`s here, `remote.Command`s over SSH (from the lab's client namespace) with the
declared connection and stdin.
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.labnode import PROJECT_DIR, lab_prefix
from components.render import redact_secrets
from components.stackfile import read_stack

from . import labctl, refresh, tlsca
from .plan import Step, _dependency_order, plan
from .program import Declaration, Declared, declare

LOCAL = "command:local:Command"
REMOTE = "command:remote:Command"
SECRET_KEYS = ("haproxy-ha:statsPassword", "haproxy-ha:sshPrivateKey", "haproxy-ha:vrrpPassword",
               "haproxy-ha:tlsCertificates")
SYMBOL = {"create": "+ ", "update": "~ ", "replace": "+-", "delete": "- "}


class LabError(RuntimeError):
    pass


@dataclass
class Outcome:
    steps: list[Step]
    executed: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Lab:
    """One lab stack: its state directory, credentials, and what was applied."""

    def __init__(self, stack: str = "lab", config: dict[str, Any] | None = None, log: Callable[[str], None] = print):
        self.stack = stack
        self.prefix = lab_prefix(stack)
        self.state_dir = labctl.LAB_ROOT / "stacks" / stack
        self.base_config = config if config is not None else read_stack(stack).config
        self.log = log
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._before: dict[str, Declared] = {}

    # --- credentials and state -------------------------------------------------------------

    def _credentials(self, config: dict[str, Any]) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.state_dir / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"haproxy-ha-{self.stack}",
                            "-f", str(key)], check=True)
        password = self.state_dir / "stats-password"
        if not password.exists():
            password.write_text(secrets.token_urlsafe(12) + "\n")
            password.chmod(0o600)
        credentials: dict[str, Any] = {
            "haproxy-ha:sshPublicKey": (key.with_suffix(".pub")).read_text().strip(),
            "haproxy-ha:sshPrivateKey": key.read_text(),
            "haproxy-ha:statsPassword": password.read_text().strip(),
        }
        bundles = tlsca.lab_certificates(self.tls_dir, self.stack, config)
        if bundles:
            credentials["haproxy-ha:tlsCertificates"] = bundles
        return credentials

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    def _random_seed(self) -> bytes:
        """The seed of this stack's random resources: what Pulumi keeps in the stack state."""
        path = self.state_dir / "random-seed"
        if not path.exists():
            path.write_bytes(secrets.token_bytes(32))
            path.chmod(0o600)
        return path.read_bytes()

    @property
    def stats_password(self) -> str:
        return (self.state_dir / "stats-password").read_text().strip()

    def config(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        merged = {**self.base_config, **(overrides or {})}
        return {**merged, **self._credentials(merged)}

    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def load_state(self) -> Declaration | None:
        path = self._state_file()
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Declaration([Declared.from_json(r) for r in data["resources"]], data.get("outputs", {}))

    def _save_state(self, applied: dict[str, Declared], order: list[str], outputs: dict[str, Any]) -> None:
        path = self._state_file()
        tmp = path.with_suffix(".tmp")
        resources = [applied[u].to_json() for u in order if u in applied]
        tmp.write_text(json.dumps({"resources": resources, "outputs": outputs}, indent=1, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(path)

    # --- preview -----------------------------------------------------------------------------

    def preview(self, config: dict[str, Any] | None = None, replace: tuple[str, ...] = (),
                diff: bool = False) -> tuple[Declaration, list[Step]]:
        new = declare(self.stack, self.config(config), SECRET_KEYS, random_seed=self._random_seed())
        old = self.load_state()
        # `refresh: always`: read what is really on every node first, and keep what was read.
        refresh.refresh(self.ns("cl"), PROJECT_DIR, old)
        if old is not None:
            self._save_state({r.urn: r for r in old.resources}, [r.urn for r in old.resources], old.outputs)
        steps = refresh.with_drift(plan(old, new), old)
        steps = [Step("replace", s.resource, s.changed) if s.op == "same" and any(p in s.resource.name for p in replace)
                 else s for s in steps]
        self._print_plan(old, steps, diff)
        return new, steps

    def _print_plan(self, old: Declaration | None, steps: list[Step], diff: bool) -> None:
        before = {r.urn: r for r in old.resources} if old else {}
        self.log(f"Previewing update ({self.stack}):")
        counts: dict[str, int] = {}
        for step in steps:
            counts[step.op] = counts.get(step.op, 0) + 1
            if step.op == "same":
                continue
            kind = step.resource.type.split(":", 1)[1]
            changed = f" [{', '.join(step.changed)}]" if step.changed else ""
            self.log(f"  {SYMBOL[step.op]} {kind:<16} {step.resource.name}{changed}")
            for item in refresh.drift_lines(step, old) if "drift" in step.changed else ():
                self.log(f"      drift: {item}")
            if diff and step.op in ("update", "replace") and step.resource.urn in before:
                self._print_diff(before[step.resource.urn], step.resource, step.changed)
        summary = ", ".join(f"{n} to {op}" for op, n in sorted(counts.items()) if op != "same")
        self.log(f"Resources: {summary or 'no changes'}; {counts.get('same', 0)} unchanged")

    def _print_diff(self, old: Declared, new: Declared, changed: tuple[str, ...]) -> None:
        for key in changed:
            if key in new.secret_inputs or key in old.secret_inputs:
                self.log(f"      {key}: [secret]")
                continue
            a, b = old.inputs.get(key), new.inputs.get(key)
            if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
                for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=1):
                    if not line.startswith(("---", "+++")):
                        self.log(f"      {line}")
            else:
                self.log(f"      {key}: {json.dumps(a)} => {json.dumps(b)}")

    # --- apply ------------------------------------------------------------------------------

    def up(self, config: dict[str, Any] | None = None, replace: tuple[str, ...] = (), diff: bool = False,
           parallel: int = 8) -> Outcome:
        started = time.monotonic()
        missing = missing_packages()
        if missing:  # a node would install them with apt into the host's /usr: refuse instead
            raise LabError(f"the lab needs these Debian packages on this machine: {' '.join(missing)} "
                           "(make setup installs them)")
        new, steps = self.preview(config, replace, diff)
        old = self.load_state()
        applied: dict[str, Declared] = {r.urn: r for r in (old.resources if old else [])}
        self._before = dict(applied)  # what each resource was, for the dynamic provider's update
        previous_outputs = old.outputs if old else {}
        outcome = Outcome(steps)
        todo = [s for s in steps if s.op in ("create", "update", "replace")]
        deletes = [s for s in steps if s.op == "delete"]
        order = [r.urn for r in _dependency_order(new.resources)]
        failure: str | None = None

        # Replacements that must delete first (lab machines) run their old delete before anything.
        for step in todo:
            if step.op == "replace" and step.resource.delete_before_replace and step.resource.urn in applied:
                self._delete(applied[step.resource.urn])

        waiting = {s.resource.urn: s for s in todo}
        done: set[str] = set()
        running: dict[Future, Step] = {}
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            while (waiting or running) and failure is None:
                for urn, step in list(waiting.items()):
                    if not any(d in waiting or d in {s.resource.urn for s in running.values()}
                               for d in step.resource.dependencies):
                        del waiting[urn]
                        running[pool.submit(self._execute, step)] = step
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    step = running.pop(future)
                    try:
                        future.result()
                    except LabError as exc:
                        failure = f"{step.resource.name}: {exc}"
                        continue
                    applied[step.resource.urn] = step.resource
                    done.add(step.resource.urn)
                    outcome.executed.append(step.resource.name)
                    with self._lock:
                        self._save_state(applied, order, previous_outputs)
            if failure is not None:
                for future in running:  # let the ones already running finish
                    step = running[future]
                    try:
                        future.result()
                        applied[step.resource.urn] = step.resource
                        outcome.executed.append(step.resource.name)
                    except LabError:
                        pass
        if failure is None:
            for step in deletes:
                self._delete(step.resource)
                applied.pop(step.resource.urn, None)
        outcome.outputs = new.outputs
        # A failed update keeps the previous outputs, as Pulumi does.
        self._save_state(applied, order, new.outputs if failure is None else previous_outputs)
        outcome.seconds = time.monotonic() - started
        if failure is not None:
            raise LabError(f"update failed at {failure}")
        self.log(f"Update done in {outcome.seconds:.1f} s: {len(outcome.executed)} executed")
        return outcome

    def _execute(self, step: Step) -> None:
        res = step.resource
        if res.type == refresh.DYNAMIC:
            self.log(f"  {'reading' if step.op == 'create' else 'restoring'} {res.name}")
            old = self._before.get(res.urn)
            try:
                res.outputs = refresh.call(self.ns("cl"), PROJECT_DIR, "create" if step.op == "create" else "update",
                                           res, old)
            except refresh.ProviderError as exc:
                raise LabError(redact_secrets(str(exc))) from None
            return
        command = res.inputs.get("create")
        if step.op == "update" and res.inputs.get("update"):
            command = res.inputs["update"]
        self._run(res, command, "running")

    def _delete(self, res: Declared) -> None:
        self._run(res, res.inputs.get("delete"), "deleting")

    def _run(self, res: Declared, command: str | None, verb: str) -> None:
        if not command:
            return
        self.log(f"  {verb} {res.name}")
        if res.type == LOCAL:
            self._run_local(res, command)
        elif res.type == REMOTE:
            self._run_remote(res, command)

    def _run_local(self, res: Declared, command: str) -> None:
        proc = subprocess.run(["sh", "-c", command], cwd=res.inputs.get("dir") or PROJECT_DIR,
                              input=res.inputs.get("stdin", ""), capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"exit status {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}")

    def _run_remote(self, res: Declared, command: str) -> None:
        conn = res.inputs["connection"]
        with tempfile.NamedTemporaryFile("w", dir=self.state_dir, delete=False) as key:
            key.write(conn["privateKey"])
        os.chmod(key.name, 0o600)
        try:
            base = ["ip", "netns", "exec", f"{self.prefix}-cl", "ssh", "-i", key.name,
                    "-p", str(int(conn.get("port", 22))), "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={int(conn.get('perDialTimeout', 10))}",
                    "-o", f"ControlPath={self.state_dir}/ssh-%h-%p",
                    f"{conn.get('user', 'root')}@{conn['host']}"]
            self._dial(base, int(conn.get("dialErrorLimit", 10)), conn["host"])
            proc = subprocess.run([*base[:-1], "-o", "ControlMaster=no", base[-1], command],
                                  input=res.inputs.get("stdin", ""), capture_output=True, text=True)
        finally:
            os.unlink(key.name)
        if proc.returncode != 0:
            # Like pulumi-command's log stream; secret outputs stay out of the saved state.
            detail = redact_secrets((proc.stderr or proc.stdout).strip())
            raise LabError(f"exit status {proc.returncode}: {detail[-3000:]}")
        if proc.stderr.strip():
            for line in redact_secrets(proc.stderr.strip()).splitlines()[-3:]:
                self.log(f"    {line}")

    def _dial(self, base: list[str], limit: int, host: str) -> None:
        """One multiplexed SSH connection per node (dial retries while it boots), reused by
        every command, as the provider keeps its connection instead of a handshake per step."""
        with self._lock:
            lock = self._host_locks.setdefault(host, threading.Lock())
        check = [*base[:-1], "-O", "check", base[-1]]
        with lock:
            if subprocess.run(check, capture_output=True).returncode == 0:
                return
            for attempt in range(max(1, limit)):
                # Started detached: a master holding our stdout pipe would block subprocess.run.
                master = subprocess.Popen(
                    [*base[:-1], "-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-N", base[-1]],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and master.poll() is None:
                    if subprocess.run(check, capture_output=True).returncode == 0:
                        return
                    time.sleep(0.05)
                if master.poll() is None:
                    master.kill()
                master.wait()
                time.sleep(min(0.5 * (attempt + 1), 3))
        raise LabError(f"could not connect to {host} after {limit} attempts")

    # --- teardown and status ----------------------------------------------------------------

    def discard_if_unused(self) -> None:
        """After a config error: remove the credentials made for a stack that was never applied."""
        if self.state_dir.is_dir() and not self._state_file().exists():
            self._remove_state()

    def _remove_state(self) -> None:
        """This stack's state folder, and the lab's folders when no other lab is left."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        for empty in (self.state_dir.parent, labctl.LAB_ROOT):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()

    def down(self) -> None:
        """Run every delete in reverse order, then remove anything left in the lab's namespaces."""
        state = self.load_state()
        for res in reversed(_dependency_order(state.resources) if state else []):
            try:
                self._delete(res)
            except LabError as exc:
                self.log(f"  {res.name}: {exc} (continuing)")
        labctl.net_down(self.prefix)
        self._remove_state()
        self.log(f"lab {self.stack}: down")

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def node_ns(self, address: str) -> str:
        from components.labnode import host_slot
        from components.model import Cluster, Secrets
        from components.schema import load_stack

        # Only the addresses matter here: no secrets, no certificates.
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


def missing_packages() -> list[str]:
    """Packages the nodes' install step expects; lab nodes share this machine's /usr."""
    from components.model import PACKAGES

    out = []
    for package in PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            out.append(package)
    return out
