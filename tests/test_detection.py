"""cluster.failureDetection: validated with errors naming the key, mapped to the advert interval,
rendered into a keepalived.conf that keepalived accepts."""

from __future__ import annotations

import pytest

from components.config.errors import ConfigError
from components.config.schema import load_stack
from components.files.render import render_node
from components.files.validate import check_keepalived
from components.model import detection
from components.model.model import Secrets, build_cluster
from tests.conftest import requires_daemons

C = "haproxy-ha:cluster"
SECRETS = Secrets("correct horse battery")
VRRPV2 = Secrets("correct horse battery", vrrp_password="k33pal1v")
SETTINGS = ["fast", "default", "tolerant"]


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_setting_maps_to_its_advert_interval(prod, setting):
    prod[C]["failureDetection"] = setting
    cluster = build_cluster("prod", prod, SECRETS)
    assert cluster.advert_int == detection.ADVERT_INT[setting]


def test_absent_means_default(prod):
    assert build_cluster("prod", prod, SECRETS).advert_int == detection.ADVERT_INT["default"]


def test_the_settings_order_detection_time():
    assert detection.ADVERT_INT["fast"] < detection.ADVERT_INT["default"] < detection.ADVERT_INT["tolerant"]


def test_an_explicit_advert_int_still_wins_alone(prod):
    prod[C]["advertInt"] = 0.5
    assert build_cluster("prod", prod, SECRETS).advert_int == 0.5


def test_vrrpv2_without_a_setting_keeps_whole_second_adverts(prod):
    cluster = build_cluster("prod", prod, VRRPV2)
    assert cluster.vrrp_version == 2 and cluster.advert_int_text == "1"


def test_an_unknown_setting_names_the_key(prod):
    prod[C]["failureDetection"] = "quick"
    with pytest.raises(ConfigError, match=r"^haproxy-ha:cluster\.failureDetection: "):
        load_stack(prod)


def test_both_failure_detection_and_advert_int_is_one_error_naming_the_key(prod):
    prod[C]["failureDetection"] = "fast"
    prod[C]["advertInt"] = 0.05
    with pytest.raises(ConfigError, match=r"^haproxy-ha:cluster\.failureDetection: set failureDetection or "
                                          r"advertInt, not both") as caught:
        build_cluster("prod", prod, SECRETS)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_setting_with_a_vrrp_password_is_refused_naming_the_key(prod, setting):
    prod[C]["failureDetection"] = setting
    with pytest.raises(ConfigError, match=r"^haproxy-ha:cluster\.failureDetection: .*VRRPv3 has no PASS"):
        build_cluster("prod", prod, VRRPV2)


def test_the_pure_mapping_without_a_cluster(prod):
    spec = load_stack(prod).cluster
    assert detection.advert_int(spec, 3) == detection.ADVERT_INT["default"]
    assert detection.advert_int(spec, 2) == 1.0
    detection.check(spec, "k33pal1v")  # no setting: nothing to refuse


@requires_daemons
@pytest.mark.parametrize("setting", SETTINGS)
def test_keepalived_accepts_the_rendered_config_of_each_setting(prod, setting):
    prod[C]["failureDetection"] = setting
    cluster = build_cluster("prod", prod, SECRETS)
    for node in cluster.nodes:
        files = render_node(cluster, node)
        conf = next(f for f in files if f.name == "keepalived.conf")
        assert f"advert_int {detection.ADVERT_INT[setting]:g}\n" in conf.text
        assert "vrrp_priority -20\n" in conf.text  # a busy CPU must not delay the adverts
        result = check_keepalived(conf, tuple(f for f in files if f.name.endswith(".sh")), "eth0")
        assert result.status == "ok", f"{node.name}: {result.detail}\n{conf.text}"
