"""A VRID must be unique per L2 segment, also across stacks: two environments on one segment
that share a VRID fight over it (each sees the other's adverts as its own group's).

Compared with the project's other stack files on platform proxmox (lab stacks each get a
bridge of their own, so they never share a segment).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from .errors import PROJECT, ConfigError
from .schema import StackSpec

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _their_groups(cluster: dict[str, Any]) -> list[tuple[int, list[Network]]]:
    """(VRID, the node subnets its addresses live in) of another stack, read leniently."""
    nodes = cluster.get("nodes") or []
    nets: list[Network] = []
    for node in nodes:
        for key in ("address", "address6"):
            try:
                nets.append(ipaddress.ip_interface(str(node[key])).network)
            except (KeyError, TypeError, ValueError):
                continue
    groups = cluster.get("vips")
    if groups is None:
        groups = [{"virtualRouterId": cluster.get("virtualRouterId")}]
    out = []
    for group in groups if isinstance(groups, list) else []:
        try:
            out.append((int(group["virtualRouterId"]), nets))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def other_stacks(project_dir: Path, stack: str) -> dict[str, dict[str, Any]]:
    """stack -> its haproxy-ha:cluster, for the project's other stack files on platform proxmox."""
    out = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        if name == stack:
            continue
        try:
            config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        except (OSError, yaml.YAMLError):
            continue
        if config.get(f"{PROJECT}:platform", "proxmox") == "proxmox" and isinstance(
            config.get(f"{PROJECT}:cluster"), dict
        ):
            out[name] = config[f"{PROJECT}:cluster"]
    return out


def check_vrids(spec: StackSpec, others: dict[str, dict[str, Any]]) -> None:
    """Raise ConfigError naming our key when another stack uses a VRID on an overlapping subnet."""
    if spec.platform != "proxmox":
        return
    cluster = spec.cluster
    ours = [n.address.network for n in cluster.nodes] + [n.address6.network for n in cluster.nodes if n.address6]
    for i, group in enumerate(cluster.groups()):
        key = f"{PROJECT}:cluster.vips[{i}].virtualRouterId" if cluster.vips is not None \
            else f"{PROJECT}:cluster.virtualRouterId"
        for name, theirs in sorted(others.items()):
            for vrid, nets in _their_groups(theirs):
                shared = [a for a in ours for b in nets if a.version == b.version and a.overlaps(b)]
                if vrid == group.virtual_router_id and shared:
                    raise ConfigError(key, f"{vrid} is also used by stack {name} (Pulumi.{name}.yaml) on "
                                      f"{shared[0]}; two stacks on one L2 segment would fight over it")
