"""The HAProxy features as rendered and as both HAProxy versions judge them: OCSP stapling where
HAProxy supports it, raw lines named by their key when HAProxy rejects them (offline and in the
node's apply step), route conditions, and the PROXY protocol and TLS on server lines."""

from __future__ import annotations

import copy

import pytest

from components.config.errors import ConfigError
from components.files.render import haproxy_line_keys, placeholder_ticket_keys, render_node, render_scripts
from components.files.tlsissue import issue, new_ca
from components.files.validate import HOST, check_haproxy, debian13
from components.model.model import Secrets, build_cluster
from components.model.proxies import DEFAULT_PROFILE, PROFILES
from tests.conftest import requires_daemons, stack_config, tls_bundle

STATS_PW = "lab-stats-pw"


def lab(cfg=None, **bundles) -> tuple:
    cfg = cfg or stack_config("lab")
    secrets = Secrets(STATS_PW, tls_bundles={"www": tls_bundle("www"), "upstream": tls_bundle("upstream"), **bundles})
    cluster = build_cluster("lab", cfg, secrets)
    files = render_node(cluster, cluster.nodes[0]) + (placeholder_ticket_keys(cluster),)
    return cluster, files, next(f.text for f in files if f.name == "haproxy.cfg")


def judges():
    """HAProxy 2.6 (this machine, the lab) and 3.0 (Debian 13's, production's series)."""
    return [pytest.param(HOST, id="haproxy-host"), pytest.param("debian13", id="haproxy-debian13")]


def daemons(which):
    return HOST if which is HOST else debian13()


@requires_daemons
@pytest.mark.parametrize("which", judges())
def test_a_certificate_naming_an_ocsp_responder_is_stapled_where_haproxy_can(which):
    ca = new_ca("OCSP test CA")
    stapled = issue(*ca, ["www.haproxy-ha.test"], ocsp_url="http://ocsp.haproxy-ha.test/")
    cluster, files, text = lab(www=stapled)
    assert ".if version_atleast(2.8)\n    bind *:443 ssl crt-list /etc/haproxy/certs/https.crtlist" in text
    crt_lists = {f.name: f.text for f in files if f.name.endswith(".crtlist")}
    # Both TLS frontends use www; the crt-list turns OCSP updates on for it.
    assert crt_lists["tls-https.crtlist"] == "/etc/haproxy/certs/www.pem [ocsp-update on]\n"
    result = check_haproxy(text, daemons(which), files)
    if result.status == "skipped":
        pytest.skip(result.detail)
    assert result.status == "ok", result.detail
    # Without a responder there is nothing to staple: no crt-list, no version test.
    _, files, text = lab()
    assert ".if" not in text and not any(f.name.endswith(".crtlist") for f in files)


@requires_daemons
@pytest.mark.parametrize("which", judges())
def test_a_raw_line_haproxy_rejects_is_named_by_its_key(which):
    cfg = stack_config("lab")
    cfg["haproxy-ha:haproxy"]["backends"][2]["extra"] = ["retries 2", "frobnicate the-servers"]
    cluster, files, text = lab(cfg)
    result = check_haproxy(text, daemons(which), files, haproxy_line_keys(cluster))
    if result.status == "skipped":
        pytest.skip(result.detail)
    assert result.status == "failed"
    assert result.detail.startswith(
        "haproxy-ha:haproxy.backends[2].extra[1]: HAProxy rejects this line: "), result.detail
    assert "frobnicate" in result.detail
    # The node's apply step names it the same way (its lines are the same).
    script = render_scripts(cluster, cluster.nodes[0])["apply-haproxy.sh"]
    line = next(n for n, key in haproxy_line_keys(cluster).items() if key.endswith("backends[2].extra[1]"))
    assert f'{line}) printf \'%s \' "haproxy-ha:haproxy.backends[2].extra[1]" ;;' in script


def test_raw_lines_are_found_where_haproxy_cfg_has_them():
    cluster, _, text = lab()
    lines = text.splitlines()
    keys = haproxy_line_keys(cluster)
    assert keys, "the lab stack has raw lines"
    for number, key in keys.items():
        assert key.startswith("haproxy-ha:haproxy."), key
        assert lines[number - 1].strip(), number
    assert lines[min(k for k, v in keys.items() if "extraSections[0]" in v) - 1] == "cache static"


def test_a_host_and_path_route_needs_both_and_either_host_form():
    _, _, text = lab()
    assert "use_backend api if r0_api_host r0_api_beg || r0_api_wild r0_api_beg" in text
    assert "acl r0_api_wild req.hdr(host),host_only -m end -i .api.haproxy-ha.test" in text


def test_server_lines_carry_proxy_protocol_tls_and_check_options():
    _, _, text = lab()
    assert "server proxied1 192.0.2.22:8081 check send-proxy\n" in text
    assert "server ingress1 192.0.2.22:9443 check inter 2s fall 3 rise 2 send-proxy-v2 check-ssl verify none\n" in text
    assert ("server api1 192.0.2.21:8443 check inter 1s fall 2 rise 1 ssl verify required ca-file "
            "/etc/haproxy/ca/upstream.pem sni str(upstream.haproxy-ha.test) verifyhost upstream.haproxy-ha.test "
            "check-sni upstream.haproxy-ha.test\n") in text


def test_a_ca_bundle_without_a_chain_is_refused_by_its_key():
    cfg = stack_config("lab")
    leaf_only = tls_bundle("upstream").split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    key = tls_bundle("upstream")[tls_bundle("upstream").index("-----BEGIN PRIVATE KEY-----"):]
    with pytest.raises(ConfigError) as err:
        lab(copy.deepcopy(cfg), upstream=leaf_only + key)
    assert err.value.key == "haproxy-ha:haproxy.backends[3].tls.ca"
    assert "no chain after its leaf" in err.value.reason


def test_modern_differs_from_the_global_intermediate_defaults_only_in_its_tls_version():
    """The global ssl-default-bind-* lines carry intermediate; a modern frontend only raises the
    minimum version, which is right as long as both profiles share their TLS 1.3 suites and curves."""
    assert PROFILES["modern"].ciphersuites == DEFAULT_PROFILE.ciphersuites
    assert PROFILES["modern"].curves == DEFAULT_PROFILE.curves
    _, _, text = lab()
    assert "ssl-default-bind-curves X25519:prime256v1:secp384r1\n" in text
    assert "CBC" not in text and "-SHA " not in text and "SHA:" not in text
    modern = text[text.index("frontend modern"):].split("\n\n")[0]
    assert " ssl-min-ver TLSv1.3 " in modern
