"""The stack file's JSON Schema (docs/stack-config.schema.json) and the configuration page
(docs/configuration.md): generated from the config models by `python -m components schema`,
committed as generated, passed by every shipped stack file, and rejecting what the program rejects."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from components.config.errors import ConfigError
from components.config.jsonschema import schema_text
from components.config.reference import (
    EXAMPLE_STACKS,
    EXAMPLES,
    SCHEMA_FILE,
    configuration_page,
    key_schema,
    shipped_examples,
)
from components.config.schema import load_stack
from components.model.model import Secrets
from tests.conftest import ROOT, TRACKED_STACK_FILES, stack_config, tracked_project
from tests.schema_check import ANNOTATIONS, CHECKED, errors

DOCS = ROOT / "docs"
C = "haproxy-ha:cluster"
H = "haproxy-ha:haproxy"


def schema() -> dict[str, Any]:
    return json.loads((DOCS / SCHEMA_FILE).read_text())


def test_the_committed_schema_is_what_the_models_generate():
    assert (DOCS / SCHEMA_FILE).read_text() == schema_text(), "run: python -m components schema"


def test_the_committed_configuration_page_is_what_the_schema_generates():
    assert (DOCS / "configuration.md").read_text() == configuration_page(tracked_project()), \
        "run: python -m components schema"


def test_the_generator_writes_both_files_and_checks_them(tmp_path):
    def generate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "components", "schema", "--docs", str(tmp_path),
                               "--project", str(tracked_project()), *args], cwd=ROOT, capture_output=True, text=True)

    assert generate("--check").returncode == 1, "nothing written yet: both differ"
    assert generate().returncode == 0
    for name in (SCHEMA_FILE, "configuration.md"):
        assert (tmp_path / name).read_text() == (DOCS / name).read_text(), name
    assert generate("--check").returncode == 0
    (tmp_path / "configuration.md").write_text("edited by hand\n")
    checked = generate("--check")
    assert checked.returncode == 1 and "configuration.md is not what the models generate" in checked.stderr
    assert (tmp_path / "configuration.md").read_text() == "edited by hand\n", "--check writes nothing"


@pytest.mark.parametrize("path", TRACKED_STACK_FILES)
def test_every_shipped_stack_file_passes_the_schema(path):
    assert errors(schema(), yaml.safe_load((ROOT / path).read_text())) == []


def test_a_stack_file_as_pulumi_writes_it_passes_the_schema():
    """Secrets encrypted (`pulumi config set --secret`, one by one with --path), the salt, and
    keys of other namespaces."""
    secure = {"secure": "v1:AAAABBBBCCCC"}
    config = {**stack_config("lab"), **{f"haproxy-ha:{k}": secure for k in ("statsPassword", "vrrpPassword",
                                                                             "sshPrivateKey")},
              "haproxy-ha:tlsCertificates": {"www": secure, "upstream": secure},
              "haproxy-ha:proxmoxApiTokens": secure, "proxmoxve:apiToken": secure, "proxmoxve:minTls": "1.2"}
    assert errors(schema(), {"encryptionsalt": "v1:c2FsdA==:v1:abc:def", "config": config}) == []
    # An encrypted value is only ever `{secure: ...}`.
    config["haproxy-ha:statsPassword"] = {"secure": "v1:x", "plain": "oops"}
    assert errors(schema(), {"config": config})


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A change at `cluster.nodes.0.name` (dotted, list indexes as numbers), from the stack's root."""
    def change(cfg: dict) -> None:
        *parents, last = path.split(".")
        node: Any = cfg
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return change


REJECTED = [
    (_set("haproxy-ha:clustr", {}), "haproxy-ha:clustr"),
    (_set(f"{C}.bogus", 1), f"{C}.bogus"),
    (_set(f"{C}.virtualRouterId", 300), f"{C}.virtualRouterId"),
    (_set(f"{C}.nodes.0.name", "k3s lb 01"), f"{C}.nodes[0].name"),
    (_set(f"{C}.nodes.0.address", 12), f"{C}.nodes[0].address"),
    (_set(f"{C}.dns", ["172.18.10.1"] * 4), f"{C}.dns"),
    (_set(f"{C}.nodes", [{"name": "only", "host": "r730", "address": "172.18.10.11/24"}]), f"{C}.nodes"),
    (_set("haproxy-ha:platform", "docker"), "haproxy-ha:platform"),
    (_set(f"{H}.maxconn", 50), f"{H}.maxconn"),
    (_set(f"{H}.frontends.0.mode", "udp"), f"{H}.frontends[0].mode"),
    (_set(f"{H}.backends.0.healthCheck", "no spaces"), f"{H}.backends[0].healthCheck"),
    (_set(f"{H}.backends.0.timeouts", {"client": "30s"}), f"{H}.backends[0].timeouts.client"),
    (_set(f"{H}.caBundles", {"bad name": "x"}), f"{H}.caBundles.bad name"),
    (_set("haproxy-ha:vm", {"cores": 0}), "haproxy-ha:vm.cores"),
]


@pytest.mark.parametrize(("change", "where"), REJECTED, ids=[where for _, where in REJECTED])
def test_the_schema_rejects_what_the_program_rejects(change, where):
    cfg = copy.deepcopy(stack_config("prod"))
    change(cfg)
    with pytest.raises(ConfigError):
        load_stack(cfg)
    found = errors(schema(), {"config": cfg})
    assert found, "the schema passed it"
    assert any(e.startswith(f"config.{where}") for e in found), found


def test_a_misspelt_stack_file_key_is_an_error():
    assert errors(schema(), {"confg": stack_config("prod")}) == ["confg: not allowed"]


def test_the_secrets_shapes_are_the_programs():
    """Plain values (a stack file should hold them encrypted) obey Secrets.validate's rules."""
    whole = schema()
    keys = whole["properties"]["config"]["properties"]

    def schema_ok(key: str, value: str) -> bool:
        return errors(keys[f"haproxy-ha:{key}"], value, whole) == []

    def program_ok(stats: str, vrrp: str | None = None) -> bool:
        try:
            Secrets(stats, vrrp).validate()
        except ConfigError:
            return False
        return True

    for c in map(chr, range(0x20, 0x7F)):
        assert schema_ok("vrrpPassword", f"ab{c}") == program_ok("12345678", f"ab{c}"), repr(c)
    for vrrp in ("", "12345678", "123456789"):
        assert schema_ok("vrrpPassword", vrrp) == program_ok("12345678", vrrp), vrrp
    for stats in ("1234567", "12345678", "1234\n5678", "correct horse battery"):
        assert schema_ok("statsPassword", stats) == program_ok(stats), stats


def test_the_check_implements_every_keyword_the_schema_uses():
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                used.add(key)
                if key in ("properties", "patternProperties", "$defs"):
                    for sub in value.values():
                        walk(sub)
                elif key not in ("default", "enum", "const"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema())
    assert used <= ANNOTATIONS | CHECKED, sorted(used - ANNOTATIONS - CHECKED)


def test_every_written_example_fits_its_key():
    """The examples no shipped stack gives: each passes its key's schema, and none is one a
    shipped stack already gives."""
    whole = schema()
    for path, value in EXAMPLES.items():
        assert errors(key_schema(whole, path), value, whole) == [], path
    assert not set(EXAMPLES) & set(shipped_examples(tracked_project()))


def test_the_examples_come_from_every_shipped_stack():
    assert sorted(EXAMPLE_STACKS) == sorted(TRACKED_STACK_FILES)
