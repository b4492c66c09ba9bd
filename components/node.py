"""One node's remote steps: bootstrap, install, staged files, and the safe apply of each service."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .files.render import (
    PATHS,
    SSHD_BLOCK,
    render_node,
    render_probe,
    render_scripts,
    secret_identity,
    service_applies,
    stage_command,
    ticket_keys_file,
)
from .machines import Machine
from .model.firewall import CONFIRM_DIAL_ATTEMPTS
from .model.model import Cluster, Node, content_hash
from .nodestate.live import sha256, sshd_block_hash
from .nodestate.provider import NodeState
from .remote import commands
from .remote.hostkey import HostKey


@dataclass(frozen=True)
class HaNodeArgs:
    cluster: Cluster
    node: Node
    machine: Machine
    private_key: pulumi.Input[str]
    # The previous node's apply steps. Every apply step here depends on all of them: an
    # unchanged dependency does not hold anything up, so gating on one step alone would let
    # a change to another service run on every node at once.
    after: tuple[pulumi.Resource, ...] = ()
    # What must exist before HAProxy may send traffic to it (the lab's backend servers).
    backends_ready: tuple[pulumi.Resource, ...] = ()
    # With TLS: the session-ticket keys every node shares (secret) and the resource holding
    # their seed (a new seed means new keys everywhere).
    ticket_keys: pulumi.Output[str] | None = None
    ticket_seed: pulumi.Resource | None = None


class HaNode(pulumi.ComponentResource):
    """Provisions one node and applies its files; `applies` complete when it is healthy."""

    applies: tuple[pulumi.CustomResource, ...]
    config_hash: str

    def __init__(self, name: str, args: HaNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("haproxy-ha:index:HaNode", name, None, opts)
        cluster, node, machine = args.cluster, args.node, args.machine
        files = render_node(cluster, node)
        # The ticket keys' text is known only at apply time; the preview shows their generation.
        stdin_of = {f.name: f.text for f in files}
        if args.ticket_keys is not None:
            keys = ticket_keys_file(cluster, "")
            files += (keys,)
            stdin_of[keys.name] = args.ticket_keys
        scripts = render_scripts(cluster, node)

        def identity(f) -> str:
            """What marks a file's change in a plain command string or output. A secret file
            without a preview (haproxy.cfg, keepalived.conf with a VRRP password) is keyed with the
            secrets it holds only: its plain hash would let anyone test password guesses offline,
            and a key it does not hold would mark it changed when that other secret rotates."""
            if f.secret and f.preview is None:
                return secret_identity(f, cluster.stack)
            return f.identity

        self.config_hash = content_hash(*(identity(f) for f in files))

        bastion = cluster.spec.cluster.bastion
        # The node's host key, recorded at the first contact; every connection verifies it.
        self.host_key = HostKey(
            f"{name}-hostkey", node=node.name, host=machine.address, port=machine.port,
            bastion=commands.bastion_props(bastion), private_key=args.private_key,
            dial_attempts=machine.dial_error_limit, triggers=[machine.instance],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[machine.resource]),
        )

        def connection(dial_attempts: int):
            return commands.connection(host=machine.address, port=machine.port, private_key=args.private_key,
                                       host_key=self.host_key.publicKey, bastion=bastion,
                                       dial_attempts=dial_attempts)

        # A replaced machine is a fresh one: every step must run again on it.
        triggers = [machine.instance, *([args.ticket_seed.id] if args.ticket_seed else [])]

        def command(step: str, depends_on: list[pulumi.Resource], secret_stdin: bool = False, **kw):
            return commands.on_node(
                f"{name}-{step}",
                connection=kw.pop("connection", connection(10)),
                triggers=triggers,
                secret_stdin=secret_stdin,
                **kw,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )

        bootstrap = command(
            "bootstrap", [machine.resource], connection=connection(machine.dial_error_limit),
            create="sh -s", stdin=scripts["bootstrap.sh"],
        )
        install = command("install", [bootstrap], create="sh -s", stdin=scripts["install.sh"])

        staged: dict[str, pulumi.CustomResource] = {}
        for f in files:
            staged[f.name] = command(
                f"file-{f.name.replace('.', '-').replace('_', '-')}",
                [install],
                secret_stdin=f.secret,
                create=stage_command(f),
                stdin=pulumi.Output.secret(stdin_of[f.name]) if f.secret else stdin_of[f.name],
            )

        by_name = {f.name: f for f in files}
        # The firewall first, on probation: the node loads its previous rules again unless the
        # confirm step, over a new SSH connection (its own dial), gets through in time. Every
        # later step, and the next node, waits for that confirmation.
        fw_files = ("nftables.nft", "nftables.initd")
        apply_firewall = command(
            "apply-firewall", [*(staged[f] for f in fw_files), *args.after],
            create=f"sh -s -- firewall={content_hash(*(by_name[f].identity for f in fw_files))}",
            stdin=scripts["apply-firewall.sh"],
        )
        confirm_firewall = command(
            "confirm-firewall", [apply_firewall], connection=connection(CONFIRM_DIAL_ATTEMPTS),
            create="sh -s", stdin=scripts["confirm-firewall.sh"],
        )
        applies: list[pulumi.CustomResource] = [apply_firewall, confirm_firewall]
        for svc in service_applies(cluster):
            svc_hash = content_hash(*(identity(by_name[a.name]) for a in svc.files))
            applies.append(
                command(
                    f"apply-{svc.name}",
                    # Own files, own earlier services (haproxy serves before keepalived may take
                    # the VIP), and the previous node's health-gated applies.
                    [*(staged[a.name] for a in svc.files), *applies, *args.after,
                     *(args.backends_ready if svc.name == "haproxy" else ())],
                    # The content hash makes the step run again exactly when its files change.
                    create=f"sh -s -- {svc.name}={svc_hash}",
                    stdin=scripts[f"apply-{svc.name}.sh"],
                )
            )
        self.applies = tuple(applies)
        # Healthy again after a change to its machine (a reboot for a new size, a new VM): the
        # next node's machine waits for this. Runs again exactly when the machine changes.
        self.ready = commands.on_node(
            f"{name}-ready",
            connection=connection(machine.dial_error_limit),
            triggers=[*triggers, machine.settings],
            create="sh -s",
            stdin=scripts["ready.sh"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[machine.resource, *applies]),
        )
        self._state_props = node_state_props(cluster, node, files, stdin_of, scripts, machine, args.private_key,
                                             self.host_key)
        self._name = name
        self.register_outputs({"address": machine.address, "configHash": self.config_hash,
                               "hostKey": self.host_key.publicKey})

    def watch(self, after: tuple[pulumi.Resource, ...]) -> NodeState:
        """What is really on the node, read on every refresh; `up` restores what drifted. Its
        first read waits for `after` (the whole rollout: what it reports is the cluster as it
        settled, not this node alone mid-rollout)."""
        self.state = NodeState(
            f"{self._name}-state",
            self._state_props,
            pulumi.ResourceOptions(parent=self, depends_on=[*self.applies, *after],
                                   additional_secret_outputs=["privateKey", "texts"]),
        )
        return self.state


def node_state_props(cluster: Cluster, node: Node, files: tuple, stdin_of: dict, scripts: dict[str, str],
                     machine: Machine, private_key: pulumi.Input[str], host_key: HostKey) -> dict:
    """The NodeState inputs: where the node is, what must be there (paths and hashes), and what
    restores it (the files, secret, and the apply scripts)."""
    services = service_applies(cluster)
    # The read compares plain sha256s; those of files holding secrets stay secret in the state.
    hashes = {f.name: pulumi.Output.secret(pulumi.Output.from_input(stdin_of[f.name]).apply(sha256)) if f.secret
              else sha256(f.text) for f in files}
    steps = [{"name": "bootstrap", "service": "sshd_config", "files": []},
             {"name": "apply-firewall", "service": "firewall", "files": ["nftables.nft", "nftables.initd"],
              "confirm": "confirm-firewall"}] + [
        {"name": f"apply-{svc.name}", "service": svc.name, "files": [a.name for a in svc.files]} for svc in services
    ]
    return {
        "node": node.name,
        "host": machine.address,
        "port": machine.port,
        "hostKey": host_key.publicKey,
        "hostKeyUrn": host_key.urn,
        "bastion": commands.bastion_props(cluster.spec.cluster.bastion),
        "privateKey": pulumi.Output.secret(private_key),
        "interface": cluster.spec.cluster.interface,
        "stateDir": PATHS.state_dir,
        "stageDir": PATHS.stage_dir,
        "files": {f.name: [f.path, hashes[f.name]] for f in files},
        "texts": pulumi.Output.secret({f.name: stdin_of[f.name] for f in files}),
        "services": [{"name": svc.name, "pidfile": svc.pidfile, "comm": svc.comm,
                      "files": [a.name for a in svc.files], "worker": svc.child_serves}
                     for svc in services],
        "sshdBlock": sshd_block_hash(SSHD_BLOCK),
        # The read-only probe a refresh runs (the apply scripts' shell library, rendered).
        "probe": render_probe(cluster, node, files),
        "steps": steps,
        "scripts": {"bootstrap": scripts["bootstrap.sh"],
                    "apply-firewall": scripts["apply-firewall.sh"], "confirm-firewall": scripts["confirm-firewall.sh"],
                    **{f"apply-{svc.name}": scripts[f"apply-{svc.name}.sh"] for svc in services},
                    # Run when the node leaves (NodeState's delete): its VIPs go before its machine.
                    "leave": scripts["leave.sh"]},
    }
