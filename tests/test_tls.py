"""TLS: certificate bundles checked before anything is touched, errors that name the key and
never the key material, previews that show a certificate's identity, shared ticket keys."""

from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.config.errors import ConfigError
from components.config.tls import load_certificate, ticket_keys
from components.files.render import render_node
from components.files.tlsissue import issue, new_ca
from components.model.model import Secrets, build_cluster
from tests.conftest import stack_config, tls_bundle, tls_secrets
from tests.mocks import changes
from tests.program_support import run

STATS_PW = "correct horse battery"


def now() -> dt.datetime:
    """Now, when the test runs (a module-level constant goes stale in a long session)."""
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return new_ca("test CA for bundles")


def split(bundle: str) -> tuple[str, str]:
    cert, _, key = bundle.partition("-----BEGIN PRIVATE KEY-----")
    return cert, "-----BEGIN PRIVATE KEY-----" + key


def lab_cfg() -> dict:
    cfg = stack_config("lab")
    cfg["haproxy-ha:sshPublicKey"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB lab@test"
    return cfg


def test_a_bundle_is_summarised_by_subject_sans_serial_and_expiry(ca):
    cert = load_certificate("www", issue(*ca, ["www.haproxy-ha.test", "192.0.2.100"]), now())
    assert cert.subject == "CN=www.haproxy-ha.test"
    assert cert.sans == ("www.haproxy-ha.test", "192.0.2.100")
    assert f"serial: {cert.serial}" in cert.summary and "notAfter: " in cert.summary
    assert "PRIVATE KEY" not in cert.summary and "PRIVATE KEY" not in repr(cert)
    assert cert.pem.index("CERTIFICATE") < cert.pem.index("PRIVATE KEY"), "HAProxy reads the leaf first"


def _error(name: str, bundle: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_certificate(name, bundle, now())
    assert err.value.key == f"haproxy-ha:tlsCertificates.{name}"
    for line in bundle.splitlines():  # no line of key or certificate material
        assert line.startswith("-----") or line not in str(err.value)
    return err.value


def test_a_key_that_matches_no_certificate_is_rejected(ca):
    cert, _ = split(issue(*ca, ["a.test"]))
    _, other_key = split(issue(*ca, ["b.test"]))
    assert "does not match any certificate" in _error("www", cert + other_key).reason


def test_the_keys_certificate_must_come_first_and_the_chain_in_order(ca):
    intermediate_ca, intermediate_key = new_ca("intermediate")
    chain, key = split(issue(intermediate_ca, intermediate_key, ["www.test"]))
    leaf = chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    assert "put it first" in _error("www", intermediate_ca + leaf + key).reason
    root = ca[0]
    assert "did not issue certificate 1" in _error("www", leaf + root + key).reason


@pytest.mark.parametrize(("start_days_ago", "days", "reason"), [(100, 90, "expired on"), (-10, 90, "not valid before")])
def test_a_certificate_outside_its_validity_is_an_error(ca, start_days_ago, days, reason):
    bundle = issue(*ca, ["old.test"], days=days, not_before=now() - dt.timedelta(days=start_days_ago))
    assert reason in _error("old", bundle).reason


def test_bundles_without_a_key_with_two_keys_or_an_encrypted_key_are_errors(ca):
    cert, key = split(issue(*ca, ["x.test"]))
    assert "exactly one" in _error("x", cert).reason
    assert "exactly one" in _error("x", cert + key + key).reason
    loaded = serialization.load_pem_private_key(key.encode(), None)
    locked = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw")).decode()
    assert "encrypted" in _error("x", cert + locked).reason
    assert "no certificate" in _error("x", key).reason


def test_a_certificate_expiring_within_30_days_is_a_warning_not_an_error(ca):
    cfg = lab_cfg()
    soon = issue(*ca, ["www.haproxy-ha.test"], days=10)
    bundles = {"www": soon, "upstream": tls_bundle("upstream")}
    cluster = build_cluster("lab", cfg, Secrets(STATS_PW, tls_bundles=bundles))
    assert len(cluster.warnings) == 1
    assert cluster.warnings[0].startswith("haproxy-ha:tlsCertificates.www: expires on ")
    assert build_cluster("lab", cfg, tls_secrets(cfg, STATS_PW)).warnings == ()


def test_a_frontend_naming_a_missing_certificate_names_that_key():
    cfg = lab_cfg()
    with pytest.raises(ConfigError) as err:
        build_cluster("lab", cfg, Secrets(STATS_PW, tls_bundles={"other": tls_bundle("other")}))
    assert err.value.key == "haproxy-ha:haproxy.frontends[1].tls.certificates[0]"
    assert "no certificate 'www'" in err.value.reason and "(known: other)" in err.value.reason


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (lambda fes: fes[3].pop("redirectToHttps"), "haproxy.frontends[3].defaultBackend", "required"),
        (lambda fes: fes[1].update(bind="*:4443"), "haproxy.frontends[3].redirectToHttps", "no frontend with tls"),
        (lambda fes: fes[3].update(defaultBackend="app"), "haproxy.frontends[3].redirectToHttps", "drop its"),
        (lambda fes: fes[1].update(mode="tcp"), "haproxy.frontends[1].tls", "needs mode: http"),
        (lambda fes: fes[1]["tls"].update(minVersion="SSLv3"), "haproxy.frontends[1].tls.minVersion", "SSLv3"),
    ],
)
def test_bad_tls_shapes_name_the_key(change, key, reason):
    cfg = lab_cfg()
    change(cfg["haproxy-ha:haproxy"]["frontends"])
    with pytest.raises(ConfigError) as err:
        build_cluster("lab", cfg, tls_secrets(cfg, STATS_PW))
    assert err.value.key == f"haproxy-ha:{key}"
    assert reason in err.value.reason


def test_haproxy_binds_the_certificate_redirects_http_and_sets_hsts():
    cfg = lab_cfg()
    cluster = build_cluster("lab", cfg, tls_secrets(cfg, STATS_PW))
    files = {f.name: f for f in render_node(cluster, cluster.nodes[0])}
    text = files["haproxy.cfg"].text
    assert ("bind *:443 ssl crt /etc/haproxy/certs/www.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2 "
            "tls-ticket-keys /etc/haproxy/certs/tls-ticket-keys") in text
    assert 'http-response set-header Strict-Transport-Security "max-age=31536000"' in text
    assert "frontend http\n    bind *:80\n    mode http\n    option httplog\n" in text
    assert "http-request redirect scheme https code 301" in text
    cert = files["tls-www.pem"]
    assert cert.secret and cert.mode == "0600" and cert.path == "/etc/haproxy/certs/www.pem"
    assert "PRIVATE KEY" not in cert.redacted and "serial: " in cert.redacted


def test_ticket_keys_rotate_without_a_miss():
    seed = base64.b64encode(bytes(range(64))).decode()
    first, second = ticket_keys(seed, 1).splitlines(), ticket_keys(seed, 2).splitlines()
    assert len(first) == 3 and all(len(base64.b64decode(k)) == 80 for k in first)
    # HAProxy encrypts with the middle key and decrypts with all three: generation 2 still
    # decrypts what generation 1 encrypted, and generation 1 nodes decrypt generation 2's.
    assert first[1] in second and second[1] in first
    assert ticket_keys(seed, 1) == ticket_keys(seed, 1)
    assert ticket_keys(base64.b64encode(bytes(64)).decode(), 1) != ticket_keys(seed, 1)


def test_the_program_delivers_bundles_as_secrets_and_previews_only_their_identity():
    cfg = lab_cfg()
    cfg["haproxy-ha:tlsCertificates"] = {"www": tls_bundle("www"), "upstream": tls_bundle("upstream")}
    declared = run(cfg, stack="lab")
    stage = declared.by_name("haproxy-ha-k3s-lb-01-file-tls-www-pem")
    assert "stdin" in stage.secret_inputs and "PRIVATE KEY" in stage.inputs["stdin"]
    assert "PRIVATE KEY" not in stage.inputs["create"] and "serial: " in stage.inputs["create"]
    keys = declared.by_name("haproxy-ha-k3s-lb-01-file-tls-ticket-keys")
    assert "stdin" in keys.secret_inputs and len(keys.inputs["stdin"].splitlines()) == 3
    assert "generation 1" in keys.inputs["create"]
    assert len([r for r in declared.resources if r.kind == "SecretSeedProvider"]) == 1
    state = declared.by_name("haproxy-ha-k3s-lb-01-state")
    assert {"texts", "privateKey"} <= state.secret_inputs, "the node state keeps its files and key secret"
    for res in declared.steps():
        assert "PRIVATE KEY" not in res.inputs["create"], res.name
        assert keys.inputs["stdin"].splitlines()[0] not in res.inputs["create"], res.name


def test_a_rotated_certificate_previews_its_new_serial_and_rolls_only_haproxy(ca):
    cfg = lab_cfg()
    cfg["haproxy-ha:tlsCertificates"] = {"www": tls_bundle("www"), "upstream": tls_bundle("upstream")}
    before = run(cfg, stack="lab")
    rotated = copy.deepcopy(cfg)
    rotated["haproxy-ha:tlsCertificates"] = {**cfg["haproxy-ha:tlsCertificates"],
                                             "www": issue(*ca, ["www.haproxy-ha.test", "192.0.2.100"])}
    after = run(rotated, stack="lab")
    changed = set(changes(before, after))
    nodes = ("k3s-lb-01", "k3s-lb-02", "k3s-lb-03")
    steps = ("file-tls-www-pem", "apply-haproxy", "state")
    assert changed == {f"haproxy-ha-{n}-{step}" for n in nodes for step in steps}
    old, new = (d.by_name("haproxy-ha-k3s-lb-02-file-tls-www-pem").inputs["create"] for d in (before, after))
    serial = f"{x509.load_pem_x509_certificate(rotated['haproxy-ha:tlsCertificates']['www'].encode()).serial_number:x}"
    assert f"serial: {serial}" in new and f"serial: {serial}" not in old


def test_a_bad_bundle_stops_the_program_before_any_resource():
    cfg = lab_cfg()
    cert, _ = split(tls_bundle("www"))
    _, other = split(tls_bundle("other"))
    cfg["haproxy-ha:tlsCertificates"] = {"www": cert + other}
    with pytest.raises(Exception, match=r"haproxy-ha:tlsCertificates\.www: the private key does not match"):
        run(cfg, stack="lab")
