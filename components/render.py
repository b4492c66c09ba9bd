"""Pure rendering: cluster model + node -> the files that node runs. No Pulumi here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from .model import Cluster, Node

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Paths:
    """Where each file lives on a node."""

    haproxy_cfg: str = "/etc/haproxy/haproxy.cfg"
    keepalived_conf: str = "/etc/keepalived/keepalived.conf"
    notify_script: str = "/etc/keepalived/notify.sh"
    check_script: str = "/etc/keepalived/check_haproxy.sh"
    state_dir: str = "/run/haproxy-ha"
    state_file: str = "/run/haproxy-ha/vrrp-state"
    state_log: str = "/var/log/keepalived-state-change.log"


PATHS = Paths()


@dataclass(frozen=True)
class RenderedFile:
    """One file for one node: where it goes, its mode, its text, whether it holds a secret."""

    name: str  # file name in an offline render and in resource names
    path: str  # absolute path on the node
    mode: str  # octal, as chmod takes it
    text: str
    secret: bool

    @property
    def redacted(self) -> str:
        """The text with secrets masked: safe for plain outputs and preview diffs."""
        return redact(self.text)


_SECRET_LINES = (
    re.compile(r"^(\s*user \S+ password )\S+$", re.M),  # HAProxy userlist hash
    re.compile(r"^(\s*auth_pass )\S+$", re.M),  # keepalived PASS auth
)


def redact(text: str) -> str:
    for pattern in _SECRET_LINES:
        text = pattern.sub(r"\1<redacted>", text)
    return text


@cache
def _environment(template_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _context(cluster: Cluster, node: Node, paths: Paths) -> dict:
    spec = cluster.spec
    return {
        "stack": cluster.stack,
        "node": node,
        "cluster": spec.cluster,
        "haproxy": spec.haproxy,
        "platform": cluster.platform,
        "paths": paths,
        "vrrp_version": cluster.vrrp_version,
        "vrrp_password": cluster.secrets.vrrp_password,
        "advert_int": cluster.advert_int_text,
        "track_weight": cluster.track_weight,
        "health_port": cluster.health_port,
        "stats_password_hash": cluster.stats_password_hash,
        "placeholders": cluster.secrets.placeholders,
        "route_acls": cluster.route_acls,
    }


def render_node(
    cluster: Cluster, node: Node, paths: Paths = PATHS, template_dir: Path = TEMPLATES
) -> tuple[RenderedFile, ...]:
    """Every config file and script of one node, in a stable order."""
    env = _environment(template_dir)
    ctx = _context(cluster, node, paths)

    def render(template: str) -> str:
        return env.get_template(template).render(ctx)

    return (
        RenderedFile("haproxy.cfg", paths.haproxy_cfg, "0640", render("haproxy.cfg.j2"), secret=True),
        RenderedFile(
            "keepalived.conf",
            paths.keepalived_conf,
            "0640",
            render("keepalived.conf.j2"),
            secret=cluster.secrets.vrrp_password is not None,
        ),
        RenderedFile("notify.sh", paths.notify_script, "0755", render("notify.sh.j2"), secret=False),
        RenderedFile(
            "check_haproxy.sh", paths.check_script, "0755", render("scripts/check_haproxy.sh.j2"), secret=False
        ),
    )


def render_cluster(cluster: Cluster, **kwargs) -> dict[str, tuple[RenderedFile, ...]]:
    return {node.name: render_node(cluster, node, **kwargs) for node in cluster.nodes}
