"""Rendered files: accepted by the real daemons, deterministic, no secret in plain text."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from components.__main__ import WITH_HAPROXY_CFG
from components.files.render import RenderedFile, placeholder_ticket_keys, render_cluster, render_node, render_scripts
from components.files.validate import check_haproxy, check_keepalived, check_shell
from components.model.model import build_cluster
from tests.conftest import ROOT, VALIDATED, requires_daemons, stack_config, tls_secrets, tracked_project
from tests.strategies import clusters

STATS_PW = "correct horse battery"
VRRP_PW = "k33pal1v"


def assert_accepted(cluster) -> None:
    """Every node's haproxy.cfg and keepalived.conf pass the daemons' own checks, warning-free."""
    rendered = render_cluster(cluster)
    haproxy_texts = set()
    for node, files in rendered.items():
        by_name = {f.name: f for f in files}
        # haproxy.cfg differs between nodes only in its header comment.
        haproxy_texts.add(by_name["haproxy.cfg"].text.split("\n", 1)[1])
        scripts = tuple(f for f in files if f.name.endswith(".sh"))
        result = check_keepalived(by_name["keepalived.conf"], scripts, cluster.interfaces)
        assert result.status == "ok", f"{node}: {result.detail}\n{by_name['keepalived.conf'].text}"
        VALIDATED["keepalived.conf"] += 1
    assert len(haproxy_texts) == 1
    files = next(iter(rendered.values()))
    if cluster.uses_tls:
        files += (placeholder_ticket_keys(cluster),)
    first = next(f for f in files if f.name == "haproxy.cfg")
    result = check_haproxy(first.text, files=files)
    assert result.status == "ok", f"{result.detail}\n{first.text}"
    VALIDATED["haproxy.cfg"] += len(rendered)


@requires_daemons
@pytest.mark.parametrize("stack", ["prod", "lab", "k3s"])
@pytest.mark.parametrize("vrrp_password", [None, VRRP_PW])
def test_checked_in_stacks_are_accepted_by_the_daemons(stack, vrrp_password):
    cfg = stack_config(stack)
    assert_accepted(build_cluster(stack, cfg, tls_secrets(cfg, STATS_PW, vrrp_password)))


@requires_daemons
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=clusters())
def test_generated_clusters_are_accepted_by_the_daemons(cfg):
    assert_accepted(build_cluster("gen", cfg, tls_secrets(cfg, STATS_PW)))


def test_rendering_is_deterministic(prod):
    first = render_cluster(build_cluster("prod", prod, tls_secrets(prod, STATS_PW, VRRP_PW)))
    again = stack_config("prod")
    second = render_cluster(build_cluster("prod", again, tls_secrets(again, STATS_PW, VRRP_PW)))
    assert first == second


@pytest.mark.parametrize("stack", ["prod", "lab", "k3s"])
def test_no_secret_in_plain_text(stack):
    cluster = build_cluster(stack, stack_config(stack), tls_secrets(stack_config(stack), STATS_PW, VRRP_PW))
    for files in render_cluster(cluster).values():
        for f in files:
            assert STATS_PW not in f.text, f.name
            assert cluster.stats_password_hash not in f.redacted, f.name
            assert VRRP_PW not in f.redacted, f.name
            if VRRP_PW in f.text or cluster.stats_password_hash in f.text:
                assert f.secret and f.mode == "0640", f"{f.name} holds a secret but is not marked"


def test_keepalived_renders_what_the_model_decided(prod):
    prod["haproxy-ha:cluster"]["unicast"] = True
    cluster = build_cluster("prod", prod, tls_secrets(prod, STATS_PW))
    text = {f.name: f.text for f in render_node(cluster, cluster.nodes[1])}["keepalived.conf"]
    assert "priority 253" in text and "state BACKUP" in text
    assert "unicast_peer {\n        172.18.10.11\n        172.18.10.13\n    }" in text
    assert "enable_script_security" in text and "nopreempt" not in text
    # Locked in memory, but no realtime priority: keepalived's RLIMIT_RTTIME killed its VRRP process on a reload.
    assert "vrrp_rt_priority 50" not in text and "\n    vrrp_no_swap\n" in text


@pytest.mark.parametrize("preempt", [True, False])
def test_a_dead_or_hung_haproxy_means_fault_in_both_preempt_modes(preempt):
    """No weight anywhere: lowering a priority waits out the backup's master-down timer (and
    never moves the VIP with nopreempt); FAULT sends a priority-0 advert at once."""
    cfg = stack_config("lab")
    cfg["haproxy-ha:cluster"]["preempt"] = preempt
    cluster = build_cluster("lab", cfg, tls_secrets(cfg, STATS_PW))
    text = {f.name: f.text for f in render_node(cluster, cluster.nodes[0])}["keepalived.conf"]
    assert "weight 0\n    init_file 1\n" in text, "the track file: non-zero means FAULT; failed until confirmed"
    assert 'file "/run/haproxy-down"' in text
    assert "track_file {\n        haproxy_down\n    }" in text and "track_script {\n        chk_haproxy\n    }" in text
    assert re.search(r"^\s*weight -", text, re.M) is None
    assert "vrrp_track_process" not in text, "blind in network namespaces: the lab could not measure it"
    assert ("nopreempt" in text) is not preempt


@pytest.mark.parametrize("stack", ["prod", "lab", "k3s"])
def test_scripts_pass_busybox_and_shellcheck(stack):
    cluster = build_cluster(stack, stack_config(stack), tls_secrets(stack_config(stack), STATS_PW))
    node = cluster.nodes[0]
    scripts = [f for f in render_node(cluster, node) if f.name.endswith(".sh")]
    scripts += [RenderedFile(n, n, "0755", t, False) for n, t in render_scripts(cluster, node).items()]
    # notify, check, bootstrap, install, apply- and confirm-firewall,
    # apply-{rsyslog,haproxy,haproxy-watch,keepalived}, ready, leave
    assert len(scripts) == 12
    for f in scripts:
        result = check_shell(f)
        assert result.status == "ok", f"{f.name}: {result.detail}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@requires_daemons
def test_haproxy_authenticates_with_the_rendered_hash_and_serves_health_and_metrics(tmp_path):
    """Start the real haproxy on loopback with the rendered stats section."""
    cfg = stack_config("lab")
    port = free_port()
    cfg["haproxy-ha:haproxy"]["stats"]["port"] = port
    cluster = build_cluster("lab", cfg, tls_secrets(cfg, STATS_PW))
    text = {f.name: f.text for f in render_node(cluster, cluster.nodes[0])}["haproxy.cfg"]
    # Keep the global/defaults/userlist/stats parts; run unprivileged bits locally.
    head = text.split("\nfrontend main", 1)[0]
    head = "\n".join(
        line for line in head.splitlines()
        if not line.strip().startswith(("chroot", "user haproxy", "group", "stats socket", "log "))
    ).replace(f"*:{port}", f"127.0.0.1:{port}")
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(head + "\n")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                health = urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        assert health.status == 200  # no password needed for the probe

        def get(path, password):
            auth = b64encode(f"admin:{password}".encode()).decode()
            req = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Basic {auth}"})
            try:
                return urllib.request.urlopen(req, timeout=2).status, req
            except urllib.error.HTTPError as e:
                return e.code, req

        assert get("/", "wrong password")[0] == 401
        assert get("/", STATS_PW)[0] == 200
        status, _ = get("/metrics", STATS_PW)
        assert status == 200
        assert get("/metrics", "wrong password")[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


RENDER = [str(ROOT / ".venv/bin/python"), "-m", "components", "render"]
# A result the real checker gave: `haproxy 2.6.12 -c: ok` names the version that judged the file.
JUDGED = {"haproxy.cfg": r"haproxy \d+\.\d+(\.\d+)? -c: ok", "keepalived.conf": r"keepalived \d+\.\d+(\.\d+)? -t: ok"}


def render_cli(stack: str, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RENDER, stack, "--project", str(tracked_project()), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})


def file_lines(stdout: str, out: Path) -> dict[tuple[str, str], str]:
    """(node, file) -> what the checks said, from `NODE  FILE  PATH  RESULTS` lines."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2].startswith(str(out)):
            found[(parts[0], parts[1])] = parts[3]
    return found


def test_render_cli_writes_every_node_and_validates(tmp_path):
    """Exit 0 means every file was judged by its checker, the daemons included, and passed."""
    out = tmp_path / "out"
    proc = render_cli("prod", out)
    if proc.returncode == 4:
        pytest.skip(f"checks could not run here (make setup installs what they need): {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for node in ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03"):
        for name in ("haproxy.cfg", "keepalived.conf", "notify.sh", "check_haproxy.sh", "bootstrap.sh",
                     "install.sh", "apply-haproxy.sh", "apply-keepalived.sh"):
            assert (out / node / name).is_file()
    assert oct((out / "k3s-lb-01" / "haproxy.cfg").stat().st_mode & 0o777) == "0o640"
    assert "statsPassword is a placeholder" in proc.stderr
    assert "PLACEHOLDER" in (out / "k3s-lb-01" / "haproxy.cfg").read_text()
    said = file_lines(proc.stdout, out)
    assert len(said) == sum(1 for p in out.rglob("*") if p.is_file()), "a line for every file written"
    for (node, name), results in said.items():
        if name in JUDGED:
            assert re.fullmatch(JUDGED[name], results), f"{node} {name} not judged by the daemon: {results}"
        elif results == WITH_HAPROXY_CFG:
            assert (out / node / name).read_text() and name.startswith(("ca-", "tls-")), name
        else:
            assert all(r.endswith(": ok") for r in results.split("; ")), f"{node} {name}: {results}"
    with_cfg = [k for k, v in said.items() if v == WITH_HAPROXY_CFG]
    checks = int(re.search(r"; (\d+) checks passed, 0 failed, 0 skipped$", proc.stdout.strip()).group(1))
    assert checks == len(said) - len(with_cfg)


def test_render_cli_reports_a_check_that_could_not_run_as_skipped(tmp_path):
    """No haproxy on PATH: haproxy.cfg is written but not judged, which is exit 4, never 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("sh", "keepalived", "unshare", "ip", "busybox", "shellcheck", "rsyslogd", "logrotate"):
        if shutil.which(program):
            (bin_dir / program).symlink_to(shutil.which(program))
    out = tmp_path / "out"
    proc = render_cli("prod", out, PATH=str(bin_dir))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    said = file_lines(proc.stdout, out)
    for node in ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03"):
        assert said[(node, "haproxy.cfg")] == "haproxy -c: skipped (haproxy not installed)"
        assert (out / node / "haproxy.cfg").is_file()
    assert re.search(r"; \d+ checks passed, 0 failed, [1-9]\d* skipped \(.*haproxy not installed: 3", proc.stdout)
    assert re.search(r"error: [1-9]\d* checks skipped \(.*haproxy not installed: 3.*\): their files were written "
                     r"but not judged", proc.stderr)


def test_render_cli_invalid_stack_exits_2_and_writes_nothing(tmp_path):
    root = Path(__file__).resolve().parent.parent
    bad = (root / "Pulumi.prod.yaml").read_text().replace("virtualRouterId: 51", "virtualRouterId: 300")
    with tempfile.TemporaryDirectory(dir=root, prefix=".test-stack-") as project:
        stack_file = Path(project, "Pulumi.broken.yaml")
        stack_file.write_text(bad)
        out = tmp_path / "out"
        proc = subprocess.run(
            [str(root / ".venv/bin/python"), "-m", "components", "render", "broken",
             "--project", project, "--out", str(out)],
            capture_output=True, text=True, cwd=root,
        )
    assert proc.returncode == 2
    assert "haproxy-ha:cluster.virtualRouterId" in proc.stderr
    assert not out.exists()


def test_a_raw_line_haproxy_rejects_is_named_by_its_key(tmp_path):
    """`make render` names the `extra` line HAProxy refuses by its config key, not only by a
    line number of a file the user never wrote."""
    cfg = stack_config("prod")
    cfg["haproxy-ha:haproxy"]["frontends"][0]["extra"] = ["http-request no-such-action"]
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (project / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": cfg}))
    proc = subprocess.run([*RENDER, "bad", "--project", str(project), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "haproxy-ha:haproxy.frontends[0].extra[0]: HAProxy rejects this line" in proc.stdout + proc.stderr
