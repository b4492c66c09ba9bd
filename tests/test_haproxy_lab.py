"""The HAProxy features of the `lab` stack on a real cluster, seen from the client namespace:
routes by host and by TLS server name, the PROXY protocol both ways, TLS re-encrypted to the
backends and checked over TLS, Mozilla's profiles judged by sslyze, and a raw line HAProxy
rejects named by its key before anything is touched."""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import tlsca
from lab.kit import probe
from tests.lab_support import SLOTS, holders, needs_lab

pytestmark = needs_lab

VIP = "192.0.2.100"
CLIENT = "192.0.2.1"  # the client namespace's address (the lab's gateway)
SSLYZE = Path(os.environ.get("HAPROXY_HA_SSLYZE") or "/var/cache/haproxy-ha/sslyze/bin/sslyze")


def curl(lab, *args: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", lab.ns("cl"), "curl", "-sS", "--max-time", "5", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def https(lab, host: str, path: str = "/", *args: str) -> str:
    """GET over HTTPS through the VIP with this Host header (TLS for www.<lab domain>, the name
    the lab's certificate has; HAProxy routes on the Host header)."""
    ca = str(tlsca.ca_paths(lab.tls_dir)[0])
    www = f"www.{tlsca.DOMAIN}"
    return curl(lab, "--cacert", ca, "--resolve", f"{www}:443:{VIP}", "-H", f"Host: {host}", *args,
                f"https://{www}{path}")


def answer(text: str) -> dict[str, str]:
    """lab/kit/backend.py's answer: `backend ...`, `client ...`, `proxy ...`, `sni ...`."""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def raw_http(lab, port: int, prefix: bytes) -> str:
    """A request to the VIP that opens with `prefix` (a PROXY header a load balancer would send)."""
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); "
            "s.sendall(bytes.fromhex(sys.argv[3]) + b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n'); "
            "d=b''\nwhile True:\n c=s.recv(65536)\n if not c: break\n d+=c\nsys.stdout.write(d.decode())")
    proc = subprocess.run(["ip", "netns", "exec", lab.ns("cl"), sys.executable, "-c", code, VIP, str(port),
                           prefix.hex()], capture_output=True, text=True, timeout=15)
    return proc.stdout


def test_host_routes_match_exact_names_and_wildcards_with_the_path_ignoring_case_and_port(lab):
    for host in ("api.haproxy-ha.test", "eu.api.haproxy-ha.test"):
        got = answer(https(lab, host, "/v1/users"))
        assert got["backend"] in ("192.0.2.21:8443", "192.0.2.22:8443"), got
    # The Host header as a client may write it: upper case, with the port.
    got = answer(https(lab, "API.Haproxy-HA.test:443", "/v1/x"))
    assert got["backend"].endswith(":8443"), got
    # Host and path together: another path goes to the default backend (busybox httpd, no `sni`
    # line), and so does a name that only ends like the wildcard's domain.
    assert https(lab, "api.haproxy-ha.test", "/").startswith("backend 192.0.2.2")
    assert "sni" not in answer(https(lab, "api.haproxy-ha.test", "/"))
    assert "404 Not Found" in https(lab, "xapi.haproxy-ha.test", "/v1/users")

def test_tls_is_re_encrypted_to_the_backends_with_the_configured_server_name(lab):
    got = answer(https(lab, "api.haproxy-ha.test", "/v1/"))
    # The backend's TLS was opened by HAProxy, which sent upstream.haproxy-ha.test and verified
    # the server's certificate against the CA in the `upstream` bundle.
    assert got["sni"] == "upstream.haproxy-ha.test", got
    assert got["client"].startswith("192.0.2.1"), got  # a node: HAProxy's own connection


def stats(lab) -> dict[tuple[str, str], str]:
    """(backend, server) -> status, from the holder's stats page (CSV)."""
    text = curl(lab, "-u", f"admin:{lab.stats_password}", f"http://{VIP}:8404/;csv")
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {(r["pxname"], r["svname"]): r["status"] for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


def test_checks_over_tls_find_the_servers_up(lab):
    probe.wait_for(lambda: stats(lab).get(("ingress", "ingress1")) == "UP", 20)
    status = stats(lab)
    # api: HTTPS checks on /readyz with Host and SNI, certificates verified; ingress: HTTP
    # over TLS (check-ssl) with a PROXY v2 header, though client traffic passes through.
    assert status[("api", "api1")] == status[("api", "api2")] == "UP", status
    assert status[("ingress", "ingress1")] == "UP", status


def test_tls_passes_through_routed_by_sni_with_the_clients_address_in_proxy_v2(lab):
    for name in ("ingress.haproxy-ha.test", "shop.apps.haproxy-ha.test"):
        got = answer(curl(lab, "-k", "--resolve", f"{name}:9443:{VIP}", f"https://{name}:9443/"))
        # The backend itself terminated the TLS: it saw the name the client asked for.
        assert got == {"backend": "192.0.2.22:9443", "client": got["client"], "proxy": "v2", "sni": name}, got
        assert got["client"].startswith(f"{CLIENT}:"), got
    # Any other name: the default backend, which gets no PROXY header.
    got = answer(curl(lab, "-k", "--resolve", f"other.haproxy-ha.test:9443:{VIP}", "https://other.haproxy-ha.test:9443/"))
    assert (got["backend"], got["proxy"], got["sni"]) == ("192.0.2.21:9443", "none", "other.haproxy-ha.test"), got


def test_an_http_backend_sees_the_clients_address_in_proxy_v1(lab):
    got = answer(curl(lab, "-H", "Host: proxied.haproxy-ha.test", f"http://{VIP}:5000/"))
    assert (got["backend"], got["proxy"]) == ("192.0.2.22:8081", "v1"), got
    assert got["client"].startswith(f"{CLIENT}:"), got


def test_a_frontend_behind_a_load_balancer_takes_the_client_from_its_proxy_header(lab):
    text = raw_http(lab, 5001, b"PROXY TCP4 203.0.113.7 192.0.2.100 40000 5001\r\n")
    got = answer(text.split("\r\n\r\n", 1)[-1])
    assert (got["client"], got["proxy"]) == ("203.0.113.7:40000", "v1"), text
    # Without the header the connection is refused: nobody can pose as a load balancer's client.
    assert "203.0.113" not in raw_http(lab, 5001, b"")
    assert "backend" not in raw_http(lab, 5001, b"")


@pytest.mark.skipif(not SSLYZE.exists(), reason=f"sslyze not installed at {SSLYZE} (make setup installs it)")
@pytest.mark.parametrize(("profile", "port"), [("intermediate", 443), ("modern", 8443)])
def test_sslyze_finds_the_vip_compliant_with_mozillas_profile(lab, profile, port):
    ca = str(tlsca.ca_paths(lab.tls_dir)[0])
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.ns("cl"), str(SSLYZE), f"--mozilla_config={profile}", "--certinfo_ca_file", ca,
         f"www.{tlsca.DOMAIN}:{port}{{{VIP}}}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # sslyze's verdict per server: "OK - Compliant." or "FAILED - Not compliant." with the reasons.
    assert re.search(rf"www\.{re.escape(tlsca.DOMAIN)}:{port}.*: OK - Compliant\.", proc.stdout), proc.stdout[-3000:]
    assert "Not compliant" not in proc.stdout, proc.stdout[-3000:]


def test_a_raw_line_haproxy_rejects_is_named_by_its_key_and_nothing_is_touched(lab):
    live = {n: probe.node_exec(lab.ns(slot), "cat /etc/haproxy/haproxy.cfg").stdout for n, slot in SLOTS.items()}
    config = copy.deepcopy(lab.base_config)
    config["haproxy-ha:haproxy"]["backends"][2]["extra"] = ["retries 2", "frobnicate the-servers"]
    with pytest.raises(Exception) as err:
        lab.up(config)
    message = str(err.value)
    # Judged before anything is declared: this machine's HAProxy is the lab nodes' own.
    assert "haproxy-ha:haproxy.backends[2].extra[1]: HAProxy rejects this raw line" in message, message
    assert "unknown keyword 'frobnicate'" in message, message  # HAProxy's own words
    assert {n: probe.node_exec(lab.ns(slot), "cat /etc/haproxy/haproxy.cfg").stdout
            for n, slot in SLOTS.items()} == live, "no node's haproxy.cfg changed"
    assert holders(lab) == ["k3s-lb-01"]
    lab.up()  # the shipped config again: the cluster as it was
    assert {n: probe.node_exec(lab.ns(slot), "cat /etc/haproxy/haproxy.cfg").stdout
            for n, slot in SLOTS.items()} == live

