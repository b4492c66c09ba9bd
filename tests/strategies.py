"""Hypothesis strategies: whole stack configs (plain dicts, as Pulumi config would hold them)."""

from __future__ import annotations

from hypothesis import strategies as st

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def clusters(draw, platform: str | None = None) -> dict:
    n = draw(st.integers(2, 9))
    explicit = draw(st.booleans())
    if explicit:
        prios = sorted(draw(st.lists(st.integers(2, 254), min_size=n, max_size=n, unique=True)), reverse=True)
        if prios[0] - prios[-1] > 252:
            prios[0] = prios[-1] + 252
            if len(set(prios)) != n:
                prios = [200 - i for i in range(n)]
    nodes = []
    for i in range(n):
        node = {"name": f"lb-{i:02d}", "host": f"pve{i % 3}", "address": f"192.0.2.{10 + i}/24"}
        if explicit:
            node["priority"] = prios[i]
        nodes.append(node)
    preempt = draw(st.booleans())
    cluster = {
        "vip": "192.0.2.100/24",
        "virtualRouterId": draw(st.integers(1, 255)),
        "gateway": "192.0.2.1",
        "dns": ["192.0.2.1"],
        "interface": "eth0",
        "unicast": draw(st.booleans()),
        "preempt": preempt,
        "nodes": nodes,
    }
    if draw(st.booleans()):
        cluster["advertInt"] = draw(st.sampled_from([0.1, 0.25, 0.5, 1, 2]))

    backend_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    backends = []
    for b, name in enumerate(backend_names):
        mode = draw(st.sampled_from(["http", "tcp"]))
        backend = {
            "name": name,
            "mode": mode,
            "balance": draw(st.sampled_from(["roundrobin", "leastconn", "source"])),
            "servers": [
                {"name": f"s{s}", "address": f"198.51.100.{b * 10 + s + 1}:{8000 + s}"}
                for s in range(draw(st.integers(1, 4)))
            ],
        }
        if mode == "http" and draw(st.booleans()):
            backend["healthCheck"] = "/health"
        backends.append(backend)

    frontends = []
    ports = iter(range(5000, 5100))
    for f, backend in enumerate(backends):
        frontend = {
            "name": f"fe{f}",
            "bind": f"*:{next(ports)}",
            "mode": backend["mode"],
            "defaultBackend": backend["name"],
        }
        http_others = [x["name"] for x in backends if x["mode"] == "http"]
        if backend["mode"] == "http" and http_others and draw(st.booleans()):
            frontend["routes"] = [
                {"backend": draw(st.sampled_from(http_others)), "pathBeg": ["/static"], "pathEnd": [".css", ".js"]}
            ]
        frontends.append(frontend)

    return {
        "haproxy-ha:platform": platform or draw(st.sampled_from(["proxmox", "lab"])),
        "haproxy-ha:sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB test@example",
        "haproxy-ha:cluster": cluster,
        "haproxy-ha:haproxy": {"stats": {"port": 8404, "user": "admin"}, "frontends": frontends, "backends": backends},
    }
