"""One lab stack's whole life under the real Pulumi CLI, as a person drives it: `up`, a config
change previewed line by line and applied, a hand edit on a node restored, `destroy`, and
nothing left behind."""

from __future__ import annotations

import copy
import subprocess

from lab import labctl
from lab.kit import probe
from tests.lab_support import VIP_URL, holders, needs_lab, new_lab

pytestmark = needs_lab


def lab_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


def test_up_change_hand_edit_and_destroy_leave_nothing_behind():
    lab = new_lab()
    try:
        first = lab.up()
        assert first.outputs["rolloutOrder"] == ["k3s-lb-03", "k3s-lb-02", "k3s-lb-01"]
        probe.wait_for(lambda: holders(lab) == ["k3s-lb-01"], 15)
        assert probe.http_get(lab, VIP_URL)[0] == 200

        # The secrets provider really encrypts: no secret in the stack file or the state.
        secrets = [lab.stats_password, (lab.state_dir / "id_ed25519").read_text().splitlines()[1]]
        stored = lab.config_file.read_text() + "".join(
            p.read_text() for p in (lab.state_dir / "backend").rglob("*.json"))
        assert "secure: v1:" in lab.config_file.read_text()
        assert not any(s in stored for s in secrets), "a secret is stored in plain text"

        # A change, previewed as a person reads it: the file's new line, nothing secret.
        cfg = copy.deepcopy(lab.base_config)
        cfg["haproxy-ha:haproxy"]["backends"][1]["servers"].append({"name": "app3", "address": "192.0.2.23:8080"})
        text = lab.preview_text(cfg)
        assert "+     server app3 192.0.2.23:8080 check" in text, text
        assert not any(s in text for s in secrets)
        assert lab.preview(cfg).ops() == {
            "haproxy-ha-lab-web-192.0.2.23": "create",
            **{f"haproxy-ha-{n}-{step}": "update" for n in ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")
               for step in ("file-haproxy-cfg", "apply-haproxy", "state")},
        }
        changed = lab.up(cfg)
        assert [n for n in changed.executed if n.endswith("apply-haproxy")] == [
            f"haproxy-ha-{n}-apply-haproxy" for n in ("k3s-lb-03", "k3s-lb-02", "k3s-lb-01")]
        bodies = {probe.http_get(lab, VIP_URL)[1].strip() for _ in range(9)}
        assert "backend 192.0.2.23" in bodies
        lab.base_config = cfg

        # A hand edit: the preview's refresh shows it, one `up` restores it.
        ns = lab.node_ns("192.0.2.12")
        good = probe.node_exec(ns, "cat /etc/haproxy/haproxy.cfg").stdout
        probe.node_exec(ns, "echo '# edited by hand' >> /etc/haproxy/haproxy.cfg")
        assert lab.preview().drift()["k3s-lb-02"][0] == "haproxy.cfg: edited on the node"
        assert lab.up().executed == ["haproxy-ha-k3s-lb-02-state"]
        assert probe.node_exec(ns, "cat /etc/haproxy/haproxy.cfg").stdout == good
        lab.preview(expect_no_changes=True)
    finally:
        lab.down()
    assert lab_namespaces(lab.prefix) == []
    assert not (labctl.LAB_ROOT / "stacks" / lab.stack).exists()
    assert not (labctl.LAB_ROOT / lab.prefix).exists()
