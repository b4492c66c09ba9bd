"""How fast a lost node is replaced: `cluster.failureDetection` -> the VRRP advert interval.

A backup declares its master lost after 3 missed adverts plus its skew time
((256 - priority) / 256 x advert_int), so the advert interval sets the detection time; a master
that is not scheduled for about 2-3 intervals looks lost too. Measured in the lab
(bench/failover_ms_bench.py, medians): a lost node replaced in 0.09 / 0.14 / 0.31 s with the
priorities at 200, 150, 100, 0.12 s at the default since keepalived runs them at 254, 253, 189 (to
the new holder's GARP; docs/figures.md), a stall of the holder's VRRP process survived up to
60 / 120 / 200 ms. `default` is the interval
with no false VRRP change in any hard-case run (docs/vips-and-failover.md, "Failure detection").
"""

from __future__ import annotations

from ..config.clusterspec import ClusterSpec
from ..config.errors import PROJECT, ConfigError

# Seconds between adverts per setting (VRRPv3 counts them in centiseconds).
ADVERT_INT = {"fast": 0.03, "default": 0.05, "tolerant": 0.1}
# PASS authentication is VRRPv2, whose adverts are whole seconds.
VRRPV2_ADVERT_INT = 1.0


def advert_int(cluster: ClusterSpec, vrrp_version: int) -> float:
    """The advert interval: an explicit advertInt, else 1 s under VRRPv2, else the setting's."""
    if cluster.advert_int is not None:
        return cluster.advert_int
    if vrrp_version == 2:
        return VRRPV2_ADVERT_INT
    return ADVERT_INT[cluster.failure_detection or "default"]


def check(cluster: ClusterSpec, vrrp_password: str | None) -> None:
    """A failureDetection setting needs sub-second adverts, which VRRPv2 (PASS auth) has not."""
    if vrrp_password and cluster.failure_detection is not None:
        raise ConfigError(
            f"{PROJECT}:cluster.failureDetection",
            f"{cluster.failure_detection} means {ADVERT_INT[cluster.failure_detection]:g} s adverts, which "
            "need VRRPv3, and VRRPv3 has no PASS authentication; drop vrrpPassword, or drop "
            "failureDetection (then adverts are 1 s, a lost node is replaced in about 3 s)",
        )
