"""The lab's backend web servers (`python3 -m lab.labctl web-up|web-down`): a host per backend
address on the lab LAN, answering with its own address."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

from .labctl import (
    PROJECT_DIR,
    attach,
    kill_namespace_processes,
    lab_dir,
    namespaces,
    netns,
    running,
    sh,
    wait_listening,
)


def web_up(prefix: str, index: str, address: str, gateway: str, ports: str) -> None:
    """A backend host answering with its own address: busybox httpd on a plain port, and
    lab/kit/backend.py on `PORT:tls`, `PORT:proxy` or `PORT:tls:proxy` (the TLS bundle on stdin)."""
    ip = address.split("/")[0]
    www = lab_dir(prefix) / "web" / index
    specs = [p.split(":") for p in ports.split(",")]
    tls = sys.stdin.read() if any("tls" in spec[1:] for spec in specs) else ""
    wanted = {"address": address, "gateway": gateway, "ports": ports,
              "tls": hashlib.sha256(tls.encode()).hexdigest()}
    if not (www / "spec.json").exists() and running(prefix, f"w{index}", www, {}, "spec.json"):
        # Made before web hosts recorded their spec (by a `Step`, which this replaces with the
        # same command): kept as it is. Goes with components/remote/step.py.
        (www / "spec.json").write_text(json.dumps(wanted))
    if running(prefix, f"w{index}", www, wanted, "spec.json"):
        print(f"lab web server {ip}:{ports}: already up")
        return
    web_down(prefix, index)  # what an earlier spec made goes first
    (www / "static").mkdir(parents=True)
    (www / "index.html").write_text(f"backend {ip}\n")
    (www / "static" / "app.css").write_text(f"/* static from {ip} */\n")
    (www / "spec.json").write_text(json.dumps(wanted))
    bundle = www / "tls.pem"
    if tls:
        bundle.touch(mode=0o600)
        bundle.write_text(tls)
        if "PRIVATE KEY" not in bundle.read_text():
            raise SystemExit(f"labctl: the lab's TLS backend servers at {ip} need a certificate: add one to "
                             "haproxy-ha:tlsCertificates (a frontend's, or the one a backend's tls.ca names)")
    ns = attach(prefix, f"w{index}", f"w{index}", address, gateway)
    for port, *kinds in specs:
        if kinds:
            argv = [sys.executable, "-m", "lab.kit.backend", "--listen", f"{ip}:{port}",
                    *(["--proxy"] if "proxy" in kinds else []), *(["--tls", str(bundle)] if "tls" in kinds else [])]
            log_path = www / f"backend-{port}.log"
            log = open(log_path, "w")  # noqa: SIM115 - the server keeps it
        else:
            argv = ["busybox", "httpd", "-f", "-p", f"{ip}:{port}", "-h", str(www)]
            log, log_path = subprocess.DEVNULL, www / "index.html"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], cwd=PROJECT_DIR,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        wait_listening(ns, int(port), proc, log_path)
    print(f"lab web server {ip}:{ports}: namespace {ns}")


def web_down(prefix: str, index: str) -> None:
    ns = netns(prefix, f"w{index}")
    if ns in namespaces(prefix):
        kill_namespace_processes(ns)
        sh("ip", "netns", "del", ns, check=False)
    shutil.rmtree(lab_dir(prefix) / "web" / index, ignore_errors=True)
