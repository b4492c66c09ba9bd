from __future__ import annotations

import atexit
import copy
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from components.config.tls import names_in_config
from components.files.tlsissue import issue, new_ca
from components.model.model import Secrets

ROOT = Path(__file__).resolve().parent.parent
# How many configs the daemons checked in this run (reported at the end of the session).
VALIDATED: Counter[str] = Counter()


def _tracked_stack_files() -> tuple[str, ...]:
    """The stack files git tracks (Pulumi.prod.yaml, lab/stacks/Pulumi.lab.yaml, ...): what the
    tests read, never a developer's edited Pulumi.lab.yaml, own stacks, or a lab test's stack file."""
    proc = subprocess.run(["git", "ls-files", "-z", "--", "Pulumi.*.yaml", "lab/stacks/Pulumi.*.yaml"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the tests read the stack files git tracks; run them in a git checkout ({proc.stderr})")
    return tuple(sorted(p for p in proc.stdout.split("\0") if p))


TRACKED_STACK_FILES = _tracked_stack_files()
# stack -> its tracked file, relative to the project (a lab stack as shipped, in lab/stacks/).
TRACKED_STACKS = {Path(p).name[len("Pulumi."):-len(".yaml")]: p for p in TRACKED_STACK_FILES}


@cache
def tracked_project() -> Path:
    """A project folder holding only the tracked stack files (and Pulumi.yaml), laid out as the
    repository lays them out: for `read_stack`, `list_stacks`, `other_stacks` and `render --project`,
    which would otherwise also read whatever else lies in the repository's root."""
    project = Path(tempfile.mkdtemp(prefix="haproxy-ha-tracked-"))
    atexit.register(shutil.rmtree, project, ignore_errors=True)
    for name in ("Pulumi.yaml", *TRACKED_STACK_FILES):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, project / name)
    return project


def stack_config(stack: str = "prod") -> dict:
    """The plain (non-secret) config of a tracked stack, as full keys (a lab stack as shipped,
    not the copy `make lab` made)."""
    return copy.deepcopy(yaml.safe_load((ROOT / TRACKED_STACKS[stack]).read_text())["config"])


@pytest.fixture(autouse=True, scope="session")
def _programs_see_tracked_stacks():
    """The program's cross-stack VRID check (components/settings.py) reads the stack files of its
    project folder; under mocks that is the tracked ones only."""
    import components.settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components.settings, "PROJECT_DIR", tracked_project())
        yield


@pytest.fixture
def prod() -> dict:
    return stack_config("prod")


requires_daemons = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("keepalived")),
    reason="haproxy and keepalived are not installed (make setup installs them)",
)
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    terminalreporter.write_line(f"skipped checks: {len(skipped)}")
    for report in skipped:
        terminalreporter.write_line(f"  skipped: {report.nodeid}: {report.longrepr[-1] if report.longrepr else ''}")
    if VALIDATED:
        parts = ", ".join(f"{count} {what}" for what, count in sorted(VALIDATED.items()))
        terminalreporter.write_line(f"configs accepted by the real daemons: {parts}")


def pytest_sessionfinish(session, exitstatus):
    """With HAPROXY_HA_NO_SKIPS=1 (CI), a skipped check fails the run: a skip is never a pass."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("HAPROXY_HA_NO_SKIPS") == "1" and skipped and session.exitstatus == 0:
        session.exitstatus = 1


@cache
def _test_ca() -> tuple[str, str]:
    return new_ca("haproxy-ha test CA")


@cache
def tls_bundle(name: str) -> str:
    """A certificate for `name` from the tests' CA, valid for the lab VIP too."""
    return issue(*_test_ca(), [f"{name}.haproxy-ha.test", "192.0.2.100"])


def tls_secrets(cfg: dict, *args, **kwargs) -> Secrets:
    """Secrets with a bundle for every certificate the config's frontends use."""
    return Secrets(*args, **kwargs, tls_bundles={n: tls_bundle(n) for n in names_in_config(cfg)})


@pytest.fixture(scope="module")
def lab():
    """A lab copy of the `lab` stack for the scenario module that asks for it, VIP on k3s-lb-01;
    torn down after the module, also when a test fails."""
    from tests.lab_support import running_lab

    with running_lab() as running:
        yield running
