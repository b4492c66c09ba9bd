"""Pure rendering: cluster model + node -> the files that node runs. No Pulumi here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from ..config.alpine import repositories
from ..config.tls import ticket_keys
from ..model import proxies
from ..model.firewall import CONFIRM_SECONDS, firewall
from ..model.model import PACKAGES, Cluster, Node
from .redact import redact

# Looked up at call time, so a test can point it at an altered copy.
# $HAPROXY_HA_TEMPLATES: a templates folder of your own, to try a template change on a lab stack.
TEMPLATES = Path(os.environ.get("HAPROXY_HA_TEMPLATES") or Path(__file__).resolve().parents[2] / "templates")


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
    stage_dir: str = "/var/lib/haproxy-ha/staged"
    # The previous version of each applied file (kept out of /etc/logrotate.d, where a second
    # copy would be read as a duplicate entry).
    backup_dir: str = "/var/lib/haproxy-ha/backup"
    haproxy_pidfile: str = "/run/haproxy.pid"
    # HAProxy's admin socket, which hands its listening sockets to a new master (expose-fd).
    haproxy_admin_socket: str = "/var/lib/haproxy/admin.sock"
    # The PID of a HAProxy found running outside its supervisor, which the next start takes
    # over from (templates/haproxy.initd.j2, start_pre).
    haproxy_handover: str = "/run/haproxy-ha/haproxy-handover"
    keepalived_pidfile: str = "/run/keepalived.pid"
    # Root-only: certificates with their private keys, and the session-ticket keys.
    certs_dir: str = "/etc/haproxy/certs"
    ticket_keys: str = "/etc/haproxy/certs/tls-ticket-keys"
    # The CAs backends verify their servers with (public certificates).
    ca_dir: str = "/etc/haproxy/ca"
    haproxy_chroot: str = "/var/lib/haproxy"
    haproxy_log_socket: str = "/var/lib/haproxy/dev/log"
    haproxy_log: str = "/var/log/haproxy.log"
    # What HAProxy's master prints on stderr under its supervisor (why a start failed, above all).
    haproxy_master_log: str = "/var/log/haproxy-master.log"
    # Directly in /run: keepalived ignores a track file whose folder is missing when it starts,
    # and /run is empty after every boot.
    haproxy_down_file: str = "/run/haproxy-down"
    watch_script: str = "/usr/local/sbin/haproxy-watch"
    watch_initd: str = "/etc/init.d/haproxy-watch"
    # Ours instead of the package's: its `reload` is the master-worker one (templates/haproxy.initd.j2).
    haproxy_initd: str = "/etc/init.d/haproxy"
    keepalived_initd: str = "/etc/init.d/keepalived"
    # The node's whole ruleset (ours, in place of the package's), and our OpenRC script for it.
    nftables_conf: str = "/etc/nftables.nft"
    nftables_initd: str = "/etc/init.d/nftables"
    # A new ruleset on probation (loaded, not yet the boot file), and what the node goes back to
    # unless a new SSH connection confirms it in time.
    firewall_probation: str = "/var/lib/haproxy-ha/firewall-probation.nft"
    firewall_previous: str = "/var/lib/haproxy-ha/firewall-previous.nft"
    firewall_pending: str = "/run/haproxy-ha/firewall-pending"
    # The hash of the ruleset as last loaded (`nft -s list table`): a later difference is drift.
    firewall_loaded: str = "/run/haproxy-ha/firewall-loaded"
    rsyslog_conf: str = "/etc/rsyslog.conf"
    rsyslog_pidfile: str = "/run/rsyslogd.pid"
    logrotate_haproxy: str = "/etc/logrotate.d/haproxy"


PATHS = Paths()


@dataclass(frozen=True)
class Respawn:
    """How supervise-daemon restarts HAProxy and keepalived: `delay` s after a death, at most
    `max` times within `period` s (the next death within it ends the supervision: a crash loop
    stops there, the service is marked failed, and the node holds no VIP). delay x max must stay
    under period, or the limit is never reached. systemd's default start limit is the same, 5
    starts within 10 s: a daemon killed now and then (the OOM killer) is always started again."""

    delay: int = 1
    max: int = 5
    period: int = 10


# keepalived's VRRP process takes about a second to leave after its parent is killed (it sends
# its priority-0 adverts), and a new keepalived refuses to start until it has ("daemon is
# already running", exit 0): a 1 s delay spent one restart of the budget on every crash.
RESPAWN = {"haproxy": Respawn(), "keepalived": Respawn(delay=2, period=20)}


# sshd takes the first value it reads: bootstrap puts this block first in sshd_config.
SSHD_BLOCK = """# BEGIN haproxy-ha
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# END haproxy-ha"""


@dataclass(frozen=True)
class RenderedFile:
    """One file for one node: where it goes, its mode, its text, whether it holds a secret."""

    name: str  # file name in an offline render and in resource names
    path: str  # absolute path on the node
    mode: str  # octal, as chmod takes it
    text: str
    secret: bool
    # What a preview shows instead of a secret file's text (a certificate's subject, serial...).
    preview: str | None = None

    @property
    def redacted(self) -> str:
        """The text with secrets masked: safe for plain outputs and preview diffs."""
        return self.preview if self.preview is not None else redact(self.text)

    @property
    def identity(self) -> str:
        """What decides whether the file changed, without its secret material: the preview of a
        file that has one (a certificate's includes its sha256), else the text."""
        return self.preview if self.preview is not None else self.text


def secret_identity(f: RenderedFile, stack: str) -> str:
    """What marks a change of a secret file without a preview, in plain command strings and
    outputs: an HMAC of its text keyed with the secrets this file holds and nothing else (the
    lines `redact` masks: keepalived.conf's VRRP password, haproxy.cfg's stats password hash), so
    rotating one secret marks only the files that hold it. The rest of the file is known, so the
    key is stretched (scrypt): each offline guess at a short VRRP password costs a memory-hard
    derivation, not one hash."""
    held = [line for line, shown in zip(f.text.splitlines(), redact(f.text).splitlines(), strict=True)
            if line != shown]
    key = _identity_key("\n".join(held), f"haproxy-ha/{stack}/{f.name}")
    return hmac.new(key, f.text.encode(), hashlib.sha256).hexdigest()


@cache
def _identity_key(held: str, salt: str) -> bytes:
    # scrypt's interactive-login cost (16 MiB, about 50 ms), once per file in a run: the nodes share the secrets.
    return hashlib.scrypt(held.encode(), salt=salt.encode(), n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=32)


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
        "paths": paths,
        "vrrp_version": cluster.vrrp_version,
        "vrrp_password": cluster.secrets.vrrp_password,
        "advert_int": cluster.advert_int_text,
        "health_port": cluster.health_port,
        "stats_password_hash": cluster.stats_password_hash,
        "placeholders": cluster.secrets.placeholders,
        "route_acls": proxies.route_acls,
        "binds": cluster.binds,
        "uses_ocsp": cluster.uses_ocsp,
        "bind_options": lambda fe, crt_list: proxies.bind_options(fe, paths.certs_dir, paths.ticket_keys, crt_list),
        "server_options": lambda be, server: proxies.server_options(be, server, paths.ca_dir),
        "http_check": proxies.http_check,
        "backends_speak_tls": any(be.speaks_tls for be in spec.haproxy.backends),
        "uses_tls": cluster.uses_tls,
        "tls_profile": proxies.DEFAULT_PROFILE,
        "respawn": RESPAWN,
    }


def render_node(
    cluster: Cluster, node: Node, paths: Paths = PATHS, template_dir: Path | None = None
) -> tuple[RenderedFile, ...]:
    """Every config file and script of one node, in a stable order."""
    env = _environment(template_dir or TEMPLATES)
    ctx = _context(cluster, node, paths)

    def render(template: str) -> str:
        return env.get_template(template).render(ctx)

    return tls_files(cluster, paths) + (
        firewall_file(cluster, node, paths, template_dir),
        RenderedFile("nftables.initd", paths.nftables_initd, "0755", render("nftables.initd.j2"), secret=False),
        RenderedFile("rsyslog.conf", paths.rsyslog_conf, "0644", render("rsyslog.conf.j2"), secret=False),
        RenderedFile(
            "logrotate-haproxy", paths.logrotate_haproxy, "0644", render("logrotate-haproxy.j2"), secret=False
        ),
        RenderedFile("haproxy.initd", paths.haproxy_initd, "0755", render("haproxy.initd.j2"), secret=False),
        RenderedFile("haproxy.cfg", paths.haproxy_cfg, "0640", render("haproxy.cfg.j2"), secret=True),
        RenderedFile(
            "keepalived.conf",
            paths.keepalived_conf,
            "0640",
            render("keepalived.conf.j2"),
            secret=cluster.secrets.vrrp_password is not None,
        ),
        RenderedFile("haproxy-watch", paths.watch_script, "0755", render("haproxy-watch.py.j2"), secret=False),
        RenderedFile(
            "haproxy-watch.initd", paths.watch_initd, "0755", render("haproxy-watch.initd.j2"), secret=False
        ),
        RenderedFile("keepalived.initd", paths.keepalived_initd, "0755", render("keepalived.initd.j2"), secret=False),
        RenderedFile("notify.sh", paths.notify_script, "0755", render("notify.sh.j2"), secret=False),
        RenderedFile(
            "check_haproxy.sh", paths.check_script, "0755", render("scripts/check_haproxy.sh.j2"), secret=False
        ),
    )


def firewall_file(cluster: Cluster, node: Node, paths: Paths = PATHS, template_dir: Path | None = None) -> RenderedFile:
    """The node's nftables ruleset (components/model/firewall.py decides it)."""
    env = _environment(template_dir or TEMPLATES)
    text = env.get_template("nftables.nft.j2").render(
        stack=cluster.stack, node=node, fw=firewall(cluster.spec.cluster, cluster.spec.haproxy, node.name))
    return RenderedFile("nftables.nft", paths.nftables_conf, "0644", text, secret=False)


def tls_files(cluster: Cluster, paths: Paths = PATHS) -> tuple[RenderedFile, ...]:
    """Certificates (secret), the crt-lists of frontends that staple OCSP answers, and the CAs
    backends verify with: what `haproxy -c` needs in place before it judges haproxy.cfg."""
    out = [
        RenderedFile(f"tls-{c.name}.pem", f"{paths.certs_dir}/{c.name}.pem", "0600", c.pem, secret=True,
                     preview=c.summary)
        for c in cluster.certificates.values()
    ]
    ocsp = {name: bool(c.ocsp_url) for name, c in cluster.certificates.items()}
    out += [
        RenderedFile(f"tls-{fe.name}.crtlist", f"{paths.certs_dir}/{fe.name}.crtlist", "0600",
                     proxies.crt_list(fe, paths.certs_dir, ocsp), secret=False)
        for fe in cluster.spec.haproxy.frontends if cluster.uses_ocsp(fe)
    ]
    out += [RenderedFile(f"ca-{name}.pem", f"{paths.ca_dir}/{name}.pem", "0644", pem, secret=False)
            for name, pem in sorted(cluster.backend_cas.items())]
    return tuple(out)


def ticket_keys_file(cluster: Cluster, text: str, paths: Paths = PATHS) -> RenderedFile:
    """The shared TLS session-ticket keys (text: components.config.tls.ticket_keys)."""
    generation = cluster.spec.haproxy.tls_ticket_key_generation
    return RenderedFile(
        "tls-ticket-keys", paths.ticket_keys, "0600", text, secret=True,
        preview=f"TLS session-ticket keys: generation {generation} (3 AES-256 keys from the stack's secret seed)\n",
    )


def placeholder_ticket_keys(cluster: Cluster, paths: Paths = PATHS) -> RenderedFile:
    """Stand-in ticket keys for an offline render (the real ones derive from the stack's seed)."""
    seed = base64.b64encode(b"PLACEHOLDER ticket-key seed, offline render only").decode()
    return ticket_keys_file(cluster, ticket_keys(seed, cluster.spec.haproxy.tls_ticket_key_generation), paths)


@dataclass(frozen=True)
class ApplyFile:
    """A staged file the apply script installs, with the command that validates it first."""

    name: str
    path: str
    mode: str
    validator: str | None = None
    # Line number -> the config key of a raw line (haproxy.cfg): a rejection names it.
    keys: tuple[tuple[int, str], ...] = ()

    @property
    def validate(self) -> str | None:
        if self.validator is None:
            return None
        return f'{self.validator} "{self.path}.new"'


@dataclass(frozen=True)
class ServiceApply:
    """How one service takes new files: what to validate, how to reload, what healthy means."""

    name: str
    files: tuple[ApplyFile, ...]
    pidfile: str
    comm: str
    reload_signal: str | None = None  # None: the service manager restarts it
    new_worker: bool = False
    # What runs its files is its newest child (HAProxy's worker, keepalived's VRRP process).
    child_serves: bool = False
    ports: tuple[int, ...] = ()
    health_url: str | None = None
    health_seconds: int = 10
    settle_seconds: int = 1
    sockets: tuple[str, ...] = ()  # UNIX sockets it must have created
    # Files that must hold these values once healthy (path, value).
    file_values: tuple[tuple[str, str], ...] = ()
    # Runs under supervise-daemon (its OpenRC script says so): one started otherwise is drift.
    supervised: bool = False
    # Where to name a running daemon its supervised successor takes over from without a gap
    # (HAProxy: the sockets pass over); without it, one outside its supervisor is stopped first.
    handover: str | None = None


def haproxy_line_keys(cluster: Cluster, paths: Paths = PATHS, template_dir: Path | None = None) -> dict[int, str]:
    """Line number in haproxy.cfg -> the config key of the raw line there (every node's haproxy.cfg
    has the same lines; only its first comment names the node)."""
    if not proxies.raw_lines(cluster.spec.haproxy):
        return {}
    env = _environment(template_dir or TEMPLATES)
    text = env.get_template("haproxy.cfg.j2").render(_context(cluster, cluster.nodes[0], paths))
    return proxies.line_keys(text, cluster.spec.haproxy)


def service_applies(cluster: Cluster, paths: Paths = PATHS,
                    template_dir: Path | None = None) -> tuple[ServiceApply, ...]:
    """rsyslog first (HAProxy's log socket), then HAProxy (it must serve before keepalived may
    hold the VIP), haproxy-watch (it clears the track file once HAProxy serves), keepalived."""
    rsyslog = ServiceApply(
        name="rsyslog",
        files=(
            ApplyFile("rsyslog.conf", paths.rsyslog_conf, "0644", "rsyslogd -N1 -f"),
            ApplyFile("logrotate-haproxy", paths.logrotate_haproxy, "0644", "logrotate_check"),
        ),
        pidfile=paths.rsyslog_pidfile,
        comm="rsyslogd",
        # No reload_signal: HUP only reopens files, a new input needs a restart. HAProxy's log
        # datagrams sent during that second are lost; its traffic is not affected.
        sockets=(paths.haproxy_log_socket,),
    )
    # Certificates and ticket keys first, so `haproxy -c` judges the config with them in place.
    tls = tuple(ApplyFile(f.name, f.path, f.mode) for f in tls_files(cluster, paths))
    if cluster.uses_tls:
        tls += (ApplyFile("tls-ticket-keys", paths.ticket_keys, "0600"),)
    haproxy = ServiceApply(
        name="haproxy",
        files=(*tls, ApplyFile("haproxy.initd", paths.haproxy_initd, "0755", "sh -n"),
               ApplyFile("haproxy.cfg", paths.haproxy_cfg, "0640", "haproxy -dW -c -f",
                         keys=tuple(sorted(haproxy_line_keys(cluster, paths, template_dir).items())))),
        pidfile=paths.haproxy_pidfile,
        comm="haproxy",
        # Master-worker reload: new workers take the sockets, old ones finish their connections.
        reload_signal="USR2",
        new_worker=True,
        child_serves=True,
        ports=cluster.listen_ports,
        health_url=f"http://127.0.0.1:{cluster.health_port}/healthz",
        health_seconds=15,
        supervised=True,
        handover=paths.haproxy_handover,
    )
    watch = ServiceApply(
        name="haproxy-watch",
        files=(
            ApplyFile("haproxy-watch", paths.watch_script, "0755", "python_check"),
            ApplyFile("haproxy-watch.initd", paths.watch_initd, "0755", "sh -n"),
        ),
        pidfile="/nonexistent",  # supervise-daemon's pidfile is its own: found by name instead
        comm="haproxy-watch",
        file_values=((paths.haproxy_down_file, "0"),),
        supervised=True,
    )
    keepalived = ServiceApply(
        name="keepalived",
        files=(
            ApplyFile("keepalived.initd", paths.keepalived_initd, "0755", "sh -n"),
            ApplyFile("notify.sh", paths.notify_script, "0755", "sh -n"),
            ApplyFile("check_haproxy.sh", paths.check_script, "0755", "sh -n"),
            ApplyFile("keepalived.conf", paths.keepalived_conf, "0640", "keepalived -t -f"),
        ),
        pidfile=paths.keepalived_pidfile,
        comm="keepalived",
        reload_signal="HUP",
        child_serves=True,
        settle_seconds=2,
        supervised=True,
    )
    return rsyslog, haproxy, watch, keepalived


# How long a node may take to serve again after its machine changed (a VM boots, cloud-init runs,
# OpenRC starts the services).
READY_SECONDS = 300


def render_scripts(
    cluster: Cluster, node: Node, paths: Paths = PATHS, template_dir: Path | None = None
) -> dict[str, str]:
    """The node's provisioning scripts: bootstrap, install, apply-haproxy, apply-keepalived, ready,
    and leave (its VIPs released when it leaves the cluster)."""
    env = _environment(template_dir or TEMPLATES)
    heartbeat = cluster.spec.cluster.heartbeat
    hb_address = cluster.spec.cluster.nodes[node.index].heartbeat_address
    base = {"node": node, "paths": paths,
            "heartbeat": (heartbeat.interface, str(hb_address)) if heartbeat and hb_address else None}
    scripts = {
        "bootstrap.sh": env.get_template("scripts/bootstrap.sh.j2").render(
            base, dns=[str(s) for s in cluster.spec.cluster.dns], sshd_block=SSHD_BLOCK
        ),
        "install.sh": env.get_template("scripts/install.sh.j2").render(
            base,
            packages=PACKAGES,
            apk_repositories=repositories(cluster.spec.vm.image_url),
        ),
    }
    services = service_applies(cluster, paths, template_dir)
    for svc in services:
        scripts[f"apply-{svc.name}.sh"] = env.get_template("scripts/apply.sh.j2").render(base, svc=svc)
    # The firewall: applied on probation, confirmed over a new SSH connection.
    ruleset = firewall_file(cluster, node, paths, template_dir).text
    for step in ("apply-firewall", "confirm-firewall"):
        scripts[f"{step}.sh"] = env.get_template(f"scripts/{step}.sh.j2").render(
            base, seconds=CONFIRM_SECONDS, want=hashlib.sha256(ruleset.encode()).hexdigest())
    scripts["ready.sh"] = env.get_template("scripts/ready.sh.j2").render(base, services=services, seconds=READY_SECONDS)
    scripts["leave.sh"] = env.get_template("scripts/leave.sh.j2").render(
        base, keepalived=next(s for s in services if s.name == "keepalived"), interface=cluster.spec.cluster.interface,
        vips=[a for addresses in cluster.vip_addresses.values() for a in addresses])
    return scripts


def render_probe(cluster: Cluster, node: Node, files: tuple[RenderedFile, ...], paths: Paths = PATHS,
                 template_dir: Path | None = None) -> str:
    """The node-state read (read-only): every managed file's hash, each daemon's state, the sshd
    block, the VRRP states. Built on the apply scripts' own shell library."""
    env = _environment(template_dir or TEMPLATES)
    return env.get_template("scripts/probe.sh.j2").render(
        node=node, paths=paths, files=sorted((f.name, f.path) for f in files),
        services=service_applies(cluster, paths, template_dir), state_dir=paths.state_dir,
        interface=cluster.spec.cluster.interface, sshd_config="/etc/ssh/sshd_config",
    )


def stage_command(f: RenderedFile, paths: Paths = PATHS) -> str:
    """The command that stores a file (arriving on stdin) in the node's staging directory.

    For a file holding a secret, stdin is a secret and shows as [secret] in a preview; the
    redacted text rides along as a no-op heredoc so `pulumi preview --diff` still shows
    what changes, line by line, without the secret.
    """
    staged = f"{paths.stage_dir}/{f.name}"
    store = f'set -eu; umask 077; mkdir -p {paths.stage_dir}; cat > "{staged}.tmp"; mv -f "{staged}.tmp" "{staged}"'
    if not f.secret:
        return store
    # A fixed marker keeps the diff to the lines that changed; no rendered line can equal it.
    marker = "HAPROXY_HA_REDACTED_PREVIEW"
    if marker in f.redacted.splitlines():
        raise ValueError(f"{f.name} contains the line {marker}, which would end the preview early")
    return f": <<'{marker}'\n{f.redacted}{marker}\n{store}"


def render_cluster(cluster: Cluster, **kwargs) -> dict[str, tuple[RenderedFile, ...]]:
    return {node.name: render_node(cluster, node, **kwargs) for node in cluster.nodes}
