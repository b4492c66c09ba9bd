"""A sim stack: `Pulumi.prod.yaml`'s shape (the lab stack's cluster and HAProxy config, three
VMs on hosts r730, r630 and r420, one VIP, TLS) on platform proxmox, run by the real engine and
the real Proxmox provider against the sim's PVE (sim/daemon.py), whose VMs boot as lab nodes.

- `sim`: one PVE cluster, one endpoint (`proxmoxve:endpoint` + `proxmoxve:apiToken`);
- `sim-standalone`: three standalone hosts, each its own endpoint and token
  (`haproxy-ha:proxmoxHosts` + `haproxy-ha:proxmoxApiTokens`).

The provider verifies the PVE certificate against the sim's CA (SSL_CERT_FILE), as a user's
engine verifies theirs against the system store: the stack sets no `insecure`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import yaml

from components.config.errors import PROJECT
from components.config.schema import load_stack
from components.files.tlsissue import issue
from components.labnode import lab_backends, lab_server_bundle, web_up_args
from components.model.model import Cluster, Secrets
from lab import bastion, engine, labctl, tlsca
from lab.stack import SHIPPED, Lab, LabError

from . import control
from . import pve as simpve

MODES = {"cluster": "sim", "standalone": "sim-standalone"}
API_HOST = "127.0.0.1"


def sim_config(mode: str, apis: list[simpve.Api]) -> dict[str, Any]:
    """The stack's plain config: the lab stack's cluster and HAProxy (the prod shape in test
    ranges), the prod stack's VM sizes, platform proxmox, and the sim's endpoints."""
    lab = yaml.safe_load((SHIPPED / "Pulumi.lab.yaml").read_text())["config"]
    prod = yaml.safe_load((engine.PROJECT_DIR / "Pulumi.prod.yaml").read_text())["config"]
    config = {**lab, f"{PROJECT}:platform": "proxmox", f"{PROJECT}:vm": prod[f"{PROJECT}:vm"]}
    if mode == "cluster":
        config["proxmoxve:endpoint"] = f"https://{API_HOST}:{apis[0].port}/"
    else:
        config[f"{PROJECT}:proxmoxHosts"] = {a.key: {"endpoint": f"https://{API_HOST}:{a.port}/"} for a in apis}
    return config


class Sim(Lab):
    """A sim stack: its PVE daemon, its LAN (bastion and backend servers) and its engine runs."""

    def __init__(self, mode: str = "cluster", config: dict[str, Any] | None = None, log=print,
                 stack: str | None = None):
        if mode not in MODES:
            raise LabError(f"no sim mode {mode!r} ({', '.join(MODES)})")
        self.mode = mode
        stack = stack or MODES[mode]  # the tests' stacks have names of their own
        self.pve_dir = labctl.LAB_ROOT / "stacks" / stack / "pve"
        self.apis = self._apis()
        super().__init__(stack, config={**sim_config(mode, self.apis), **(config or {})}, log=log)
        self.engine_env = {"SSL_CERT_FILE": str(self.pve_dir / "ca.pem")}

    def configure(self, overrides: dict[str, Any] | None = None) -> None:
        # The operator key cloud-init installs for root: the lab's key for this stack.
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.base_config.setdefault(f"{PROJECT}:sshPublicKey", self._ssh_key().with_suffix(".pub").read_text().strip())
        super().configure(overrides)

    # --- the PVE -------------------------------------------------------------------------------

    def _apis(self) -> list[simpve.Api]:
        """The PVE APIs of this sim, chosen once (ports, token secrets) and kept in its spec."""
        spec = self.pve_dir / "spec.json"
        if spec.exists():
            return [simpve.Api(a["key"], tuple(a["hosts"]), a["port"], a["secret"])
                    for a in json.loads(spec.read_text())["apis"]]
        if self.mode == "cluster":
            return [simpve.Api("cluster", simpve.HOSTS, bastion.free_port())]
        return [simpve.Api(host, (host,), bastion.free_port()) for host in simpve.HOSTS]

    def _write_spec(self) -> None:
        self.pve_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec = {"host": API_HOST, "prefix": self.prefix,
                "apis": [{"key": a.key, "hosts": list(a.hosts), "port": a.port, "secret": a.secret}
                         for a in self.apis]}
        (self.pve_dir / "spec.json").write_text(json.dumps(spec, indent=1))
        if not (self.pve_dir / "pve.pem").exists():
            ca, ca_key = tlsca.ensure_ca(self.pve_dir, self.stack)
            bundle = issue(ca, ca_key, [API_HOST], days=365)
            key_start = bundle.index("-----BEGIN PRIVATE KEY-----")
            (self.pve_dir / "pve.key").write_text(bundle[key_start:])
            (self.pve_dir / "pve.key").chmod(0o600)
            (self.pve_dir / "pve.pem").write_text(bundle[:key_start])

    def daemon_pid(self) -> int | None:
        ready = self.pve_dir / "ready"
        if not ready.exists():
            return None
        pid = int(ready.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            ready.unlink(missing_ok=True)
            return None
        return pid

    def start_pve(self) -> None:
        """The sim's PVE daemon, left as it is when it runs."""
        if self.daemon_pid() is not None:
            return
        self._write_spec()
        log = open(self.pve_dir / "daemon.log", "a")
        proc = subprocess.Popen([engine.python_cmd(), "-m", "sim.daemon", str(self.pve_dir)], cwd=engine.PROJECT_DIR,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while self.daemon_pid() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.pve_dir / "daemon.log").read_text()[-2000:]
                raise LabError(f"the sim's PVE did not start:\n{tail}")
            time.sleep(0.05)

    def stop_pve(self) -> None:
        pid = self.daemon_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self.daemon_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.daemon_pid() is not None:
            os.kill(pid, signal.SIGKILL)
            (self.pve_dir / "ready").unlink(missing_ok=True)

    def control(self, op: str, **args: Any) -> Any:
        return control.call(self.pve_dir, op, **args)

    def vms(self) -> dict[str, dict[str, Any]]:
        """The VMs PVE has, by name."""
        return {vm["name"]: vm for vm in self.control("vms")}

    # --- Lab hooks ---------------------------------------------------------------------------

    def more_secrets(self) -> dict[str, str]:
        if self.mode == "cluster":
            return {"proxmoxve:apiToken": self.apis[0].token}
        return {f"{PROJECT}:proxmoxApiTokens.{a.key}": a.token for a in self.apis}

    def _lan_up(self, spec) -> None:
        """The LAN and bastion, the backend servers HAProxy routes to (a user's network has
        them before the load balancers), and the PVE."""
        super()._lan_up(spec)
        bundles = tlsca.lab_certificates(self.tls_dir, self.stack, self.base_config)
        cluster = Cluster(self.stack, load_stack(self.base_config), Secrets("x" * 8, tls_bundles=bundles))
        for host, ports in lab_backends(cluster).items():
            tls = any(p.tls for p in ports)
            subprocess.run([engine.python_cmd(), "-m", "lab.labctl", *web_up_args(cluster, host, ports)],
                           cwd=engine.PROJECT_DIR, input=lab_server_bundle(cluster) if tls else "", text=True,
                           check=True, capture_output=True)
        self.start_pve()

    def before_net_down(self) -> None:
        self.stop_pve()

    def down(self) -> None:
        if (self.state_dir / "backend").exists():
            self.start_pve()  # destroy deletes the VMs through it
        super().down()

