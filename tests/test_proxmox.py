"""Proxmox endpoints: one PVE cluster (one endpoint) or standalone hosts (one endpoint and token
each); every image and VM on its host's provider; bad combinations named by key."""

from __future__ import annotations

import copy
import re

import pytest

from components.config.errors import ConfigError
from components.config.proxmox import REQUIRED_PRIVILEGES, parse_tokens, resolve
from components.config.schema import load_stack
from tests.conftest import ROOT, stack_config
from tests.program_support import API_TOKEN, SECRET_KEYS, run, with_secrets

VM = "proxmoxve:index/vmLegacy:VmLegacy"
IMAGE = "proxmoxve:download/file:File"
PROVIDER = "pulumi:providers:proxmoxve"
TOKEN_730 = "hha@pve!r730=11111111-2222-3333-4444-555555555555"
TOKEN_630 = "hha@pve!r630=66666666-7777-8888-9999-000000000000"


def standalone(cfg: dict, hosts: dict, tokens: dict | None) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["haproxy-ha:proxmoxHosts"] = hosts
    if tokens is not None:
        cfg["haproxy-ha:proxmoxApiTokens"] = tokens
    return cfg


def test_one_cluster_endpoint_serves_every_host(prod):
    access = resolve(load_stack(prod), {"endpoint": "https://pve.example.lan:8006/", "insecure": "true"},
                     API_TOKEN, {})
    assert [(e.key, e.endpoint, e.insecure, e.hosts) for e in access.endpoints] == [
        ("default", "https://pve.example.lan:8006/", True, ("r420", "r630", "r730")),
    ]
    assert API_TOKEN not in repr(access)


def test_standalone_hosts_mixed_with_the_cluster_endpoint(prod):
    cfg = standalone(prod, {"r730": {"endpoint": "https://r730.example.lan:8006/"},
                            "r630": {"endpoint": "https://r630.example.lan:8006/", "insecure": True}}, None)
    access = resolve(load_stack(cfg), {"endpoint": "https://pve.example.lan:8006/"}, API_TOKEN,
                     {"r730": TOKEN_730, "r630": TOKEN_630})
    assert {e.key: e.hosts for e in access.endpoints} == {"default": ("r420",), "r630": ("r630",), "r730": ("r730",)}
    assert access.for_host("r630").insecure is True
    assert access.tokens[access.for_host("r730").token_key] == TOKEN_730


@pytest.mark.parametrize(
    ("hosts", "tokens", "endpoint", "key", "reason"),
    [
        # a node on a host with no endpoint at all
        ({"r730": {"endpoint": "https://r730.lan:8006/"}}, {"r730": TOKEN_730}, None,
         "haproxy-ha:cluster.nodes[1].host", "host 'r630' has no Proxmox endpoint"),
        # a token for a host that has no endpoint of its own
        ({"r730": {"endpoint": "https://r730.lan:8006/"}}, {"r730": TOKEN_730, "r999": TOKEN_630},
         "https://pve.lan:8006/", "haproxy-ha:proxmoxApiTokens.r999", "no host 'r999' in haproxy-ha:proxmoxHosts"),
        # an endpoint without its token
        ({"r730": {"endpoint": "https://r730.lan:8006/"}}, {}, "https://pve.lan:8006/",
         "haproxy-ha:proxmoxApiTokens.r730", "required: host r730 has its own endpoint"),
        # two hosts on one API with different tokens
        ({"r730": {"endpoint": "https://one.lan:8006/"}, "r630": {"endpoint": "https://one.lan:8006/"}},
         {"r730": TOKEN_730, "r630": TOKEN_630}, "https://pve.lan:8006/",
         "haproxy-ha:proxmoxHosts.r730", "shares endpoint https://one.lan:8006/"),
        # no endpoint of any kind
        ({}, {}, None, "proxmoxve:endpoint", "required on platform proxmox"),
    ],
)
def test_bad_combinations_name_the_key(prod, hosts, tokens, endpoint, key, reason):
    cfg = standalone(prod, hosts, None)
    with pytest.raises(ConfigError) as err:
        resolve(load_stack(cfg), {"endpoint": endpoint} if endpoint else {}, API_TOKEN, tokens)
    assert err.value.key == key
    assert reason in err.value.reason
    assert TOKEN_730 not in str(err.value) and TOKEN_630 not in str(err.value)


def test_an_endpoint_for_a_host_no_node_uses_is_a_typo(prod):
    cfg = standalone(prod, {"r999": {"endpoint": "https://r999.lan:8006/"}}, None)
    with pytest.raises(ConfigError, match=r"^haproxy-ha:proxmoxHosts\.r999: no node runs on host 'r999'"):
        load_stack(cfg)


def test_an_endpoint_must_be_https(prod):
    cfg = standalone(prod, {"r730": {"endpoint": "http://r730.lan:8006/"}}, None)
    with pytest.raises(ConfigError, match=r"^haproxy-ha:proxmoxHosts\.r730\.endpoint: .*https URL"):
        load_stack(cfg)


def test_a_malformed_token_is_named_without_its_value():
    with pytest.raises(ConfigError) as err:
        parse_tokens('{"r730": "not a token secretvalue"}')
    assert err.value.key == "haproxy-ha:proxmoxApiTokens.r730"
    assert "secretvalue" not in str(err.value)


def test_the_program_puts_each_image_and_vm_on_its_hosts_provider():
    cfg = standalone(stack_config("prod"), {"r730": {"endpoint": "https://r730.example.lan:8006/"},
                                            "r630": {"endpoint": "https://r630.example.lan:8006/"}},
                     {"r730": TOKEN_730, "r630": TOKEN_630})
    declared = run(cfg)
    providers = {r.name: r for r in declared.by_type(PROVIDER)}
    assert {n: p.inputs["endpoint"] for n, p in providers.items()} == {
        "haproxy-ha-pve-provider": "https://pve.example.lan:8006/",  # r420 stays on the cluster endpoint
        "haproxy-ha-pve-provider-r630": "https://r630.example.lan:8006/",
        "haproxy-ha-pve-provider-r730": "https://r730.example.lan:8006/",
    }
    for p in providers.values():
        assert "apiToken" in p.secret_inputs, p.name
    by_urn = {p.urn: p.name for p in providers.values()}
    for res in declared.by_type(VM) + declared.by_type(IMAGE):
        host = res.inputs["nodeName"]
        expected = "haproxy-ha-pve-provider" if host == "r420" else f"haproxy-ha-pve-provider-{host}"
        assert by_urn[res.provider.rsplit("::", 1)[0]] == expected, res.name


def test_the_single_endpoint_stack_keeps_one_provider_named_as_before():
    declared = run()
    assert [p.name for p in declared.by_type(PROVIDER)] == ["haproxy-ha-pve-provider"]


def test_a_host_token_given_with_pulumi_config_set_path_is_a_secret_mapping():
    from tests.mocks import declare

    cfg = with_secrets(standalone(stack_config("prod"), {"r730": {"endpoint": "https://r730.lan:8006/"}},
                                  {"r730": TOKEN_730}))
    declared = declare("prod", cfg, (*SECRET_KEYS, "haproxy-ha:proxmoxApiTokens"))
    provider = declared.by_name("haproxy-ha-pve-provider-r730")
    assert provider.inputs["apiToken"] == TOKEN_730 and "apiToken" in provider.secret_inputs


def test_the_readme_role_grants_exactly_the_privileges_the_program_needs():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r'pveum role add HaproxyHa -privs "([^"]+)"', readme)
    assert match, "the README's Proxmox section must show the pveum role command"
    assert tuple(sorted(match.group(1).split())) == REQUIRED_PRIVILEGES
