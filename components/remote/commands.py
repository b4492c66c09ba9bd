"""The program's commands, run by pulumi-command: `remote.Command` on a node over SSH, its host
key pinned (the node's recorded HostKey), through the bastion when the stack has one; and
`local.Command` on this machine (the lab's machines).

How the engine runs them (pulumi-command 1.2.1):
- a change of `triggers` replaces the command: the new one runs `create`, then the old one's
  `delete` runs (create-before-delete, unless `delete_before_replace`);
- a change of any other input (`create`, `stdin`, the connection) runs `create` again, since
  none of ours has an `update`; every script here is idempotent, so a new connection alone (a
  rotated key, a bastion) re-runs it to no effect;
- stdout and stderr are kept in the state and shown in the engine's log: our scripts print no
  secret (their validators' output is masked on the node), and a secret stdin stays secret.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_command import local, remote

from ..config.clusterspec import BastionSpec


def bastion_props(bastion: BastionSpec | None) -> dict[str, Any] | None:
    """The bastion as our dynamic providers take it (components/remote/ssh.py: Bastion)."""
    if bastion is None:
        return None
    return {"host": bastion.host, "port": bastion.port, "user": bastion.user, "hostKey": bastion.host_key}


def connection(*, host: str, port: int, private_key: pulumi.Input[str], host_key: pulumi.Input[str],
               bastion: BastionSpec | None, dial_attempts: int) -> remote.ConnectionArgs:
    """SSH as root to `host`, refusing any host key but `host_key`; through the bastion (whose
    key is pinned too) when there is one. Command marks the whole connection secret."""
    proxy = None
    if bastion is not None:
        proxy = remote.ProxyConnectionArgs(host=bastion.host, port=bastion.port, user=bastion.user,
                                           private_key=private_key, host_key=bastion.host_key,
                                           dial_error_limit=dial_attempts, per_dial_timeout=10)
    return remote.ConnectionArgs(host=host, port=port, user="root", private_key=private_key, host_key=host_key,
                                 proxy=proxy, dial_error_limit=dial_attempts, per_dial_timeout=10)


def on_node(name: str, *, connection: pulumi.Input[remote.ConnectionArgs], create: str,
            stdin: pulumi.Input[str], triggers: list[pulumi.Input[Any]], secret_stdin: bool = False,
            opts: pulumi.ResourceOptions) -> remote.Command:
    """`create` (a script on stdin) run on a node; run again when its inputs change."""
    return remote.Command(
        name,
        connection=connection,
        create=create,
        stdin=stdin,
        triggers=triggers,
        # It would set two variables through sshd's AcceptEnv, which our nodes do not accept.
        add_previous_output_in_env=False,
        # Our scripts say what they did on stderr; stdout is the tools' chatter.
        logging=remote.Logging.STDERR,
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["stdin"] if secret_stdin else None)),
    )


def on_this_machine(name: str, *, create: str, delete: str, dir: str, stdin: pulumi.Input[str] | None,
                    opts: pulumi.ResourceOptions) -> local.Command:
    """A command on this machine whose `delete` undoes it. A changed command is a new thing
    under the same names (a namespace), so the old one goes first."""
    return local.Command(
        name,
        create=create,
        delete=delete,
        dir=dir,
        stdin=stdin,
        triggers=[create],
        add_previous_output_in_env=False,
        logging=local.Logging.STDERR,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )
