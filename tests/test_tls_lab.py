"""HTTPS on a real lab cluster: the lab CA's certificate through the VIP, HTTP redirected, a
certificate rotated under load, a bad bundle refused before anything is touched, and a session
ticket from the holder resumed on the next node after the holder's HAProxy dies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import tlsca
from lab.engine import PROJECT_DIR
from lab.kit import probe
from tests.lab_support import SLOTS, holders, needs_lab

pytestmark = needs_lab

VIP = "192.0.2.100"
HOST = f"www.{tlsca.DOMAIN}"


def ca(lab) -> str:
    return str(tlsca.ca_paths(lab.tls_dir)[0])


def curl(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", lab.ns("cl"), "curl", "-sS", "--max-time", "5", *args],
                          capture_output=True, text=True)


def tlsclient(lab, *args: str) -> dict:
    out = subprocess.run(["ip", "netns", "exec", lab.ns("cl"), sys.executable, "-m", "lab.kit.tlsclient", *args,
                          "--cafile", ca(lab)], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def served_serial(lab) -> str:
    return tlsclient(lab, "serial", VIP, "443", "--servername", HOST)["serial"]


def node_cert(lab, node: str) -> str:
    return probe.node_exec(lab.ns(SLOTS[node]), "cat /etc/haproxy/certs/www.pem", check=False).stdout


def test_https_through_the_vip_with_the_lab_ca(lab):
    proc = curl(lab, "--cacert", ca(lab), "--resolve", f"{HOST}:443:{VIP}", "-D", "-", f"https://{HOST}/")
    assert proc.returncode == 0, proc.stderr
    assert "backend 192.0.2.2" in proc.stdout
    assert "strict-transport-security: max-age=31536000" in proc.stdout.lower()
    # The VIP itself is in the certificate too, and HTTP/2 is offered.
    proc = curl(lab, "--cacert", ca(lab), "--http2", "-o", "/dev/null", "-w", "%{http_version}", f"https://{VIP}/")
    assert proc.stdout == "2", proc.stderr
    assert tlsclient(lab, "serial", VIP, "443")["alpn"] == "h2"


def test_http_is_redirected_with_301_keeping_path_and_query(lab):
    proc = curl(lab, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://{HOST}/a/b?c=1",
                "--resolve", f"{HOST}:80:{VIP}")
    assert proc.stdout == f"301 https://{HOST}/a/b?c=1"


def test_a_session_from_the_holder_resumes_on_the_next_node_after_its_haproxy_dies(lab):
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("cl"), sys.executable, "-m", "lab.kit.tlsclient", "resume", VIP, "443",
         "--cafile", ca(lab), "--servername", HOST],
        cwd=PROJECT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert json.loads(client.stdout.readline())["event"] == "ready"
        holder = lab.ns(SLOTS["k3s-lb-01"])
        assert probe.kill(holder, "haproxy")
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-02"], 10)
        out, _ = client.communicate("go\n", timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
    assert json.loads(out.splitlines()[-1])["reused"] is True, "the next node decrypted the holder's ticket"
    probe.wait_for(lambda: not any(probe.comm(p) == "haproxy" for p in probe.ns_pids(holder)), 10)
    probe.node_exec(holder, "rc-service haproxy restart")
    probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)


def test_a_certificate_rotated_under_load_fails_no_request_and_the_new_serial_is_served(lab):
    before = served_serial(lab)
    tlsca.issue_for(lab.tls_dir, lab.stack, "www", VIP)  # a new www.pem: what a user's renewal does
    with probe.Load(lab, f"https://{VIP}/", workers=2, interval=0.005, cafile=ca(lab)) as load:
        load.served()
        outcome = lab.up()
        load.served()  # after the last node's swap too
        result = load.stop()
    applies = [n for n in outcome.executed if n.endswith("apply-haproxy")]
    assert applies == [f"haproxy-ha-{n}-apply-haproxy" for n in ("k3s-lb-03", "k3s-lb-02", "k3s-lb-01")]
    assert result["failed"] == 0 and result["ok"] > 0, result
    after = served_serial(lab)
    assert after != before
    assert all(node_cert(lab, n) == node_cert(lab, "k3s-lb-01") for n in SLOTS)


def test_a_bundle_whose_key_does_not_match_is_refused_before_anything_is_touched(lab):
    good = (lab.tls_dir / "www.pem").read_text()
    other = tlsca.issue_for(lab.tls_dir, lab.stack, "www", VIP)  # overwritten below
    cert = good.split("-----BEGIN PRIVATE KEY-----")[0]
    key = "-----BEGIN PRIVATE KEY-----" + other.split("-----BEGIN PRIVATE KEY-----")[1]
    (lab.tls_dir / "www.pem").write_text(cert + key)
    live = {n: node_cert(lab, n) for n in SLOTS}
    try:
        with pytest.raises(Exception, match=r"haproxy-ha:tlsCertificates\.www: the private key does not match"):
            lab.up()
    finally:
        (lab.tls_dir / "www.pem").write_text(good)
    assert {n: node_cert(lab, n) for n in SLOTS} == live, "no node was touched"
    assert lab.up().executed == [], "the good bundle is what the nodes already run"
