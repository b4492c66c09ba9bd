"""SSH to a node as root (paramiko): dial with retries, run one command with a stdin.

Shared by the node steps (components/step.py) and NodeState (nodestate_provider.py). Both run
inside the engine's dynamic-provider process, never in the program itself.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    private_key: str
    user: str = "root"
    # An OpenSSH-style ProxyCommand (%h and %p expanded): a bastion's `ssh -W %h:%p bastion`, or
    # the lab's way into its client namespace. Empty: a direct TCP connection.
    proxy_command: str = ""
    dial_attempts: int = 10
    dial_timeout: float = 10

    @classmethod
    def from_props(cls, conn: dict[str, Any]) -> Target:
        return cls(host=conn["host"], port=int(conn.get("port", 22)), private_key=conn["privateKey"],
                   user=conn.get("user", "root"), proxy_command=conn.get("proxyCommand") or "",
                   dial_attempts=int(conn.get("dialAttempts", 10)), dial_timeout=float(conn.get("dialTimeout", 10)))


def _key(text: str):
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the SSH private key is not an Ed25519, ECDSA or RSA key in OpenSSH/PEM form")


def connect(target: Target, attempts: int | None = None):
    """A connected paramiko client. Retries while the machine boots (refused, timed out, no
    banner yet), up to the target's dial attempts; the last failure is raised."""
    import paramiko

    key = _key(target.private_key)
    tries = max(1, attempts if attempts is not None else target.dial_attempts)
    last: Exception | None = None
    for attempt in range(tries):
        client = paramiko.SSHClient()
        # As pulumi-command without a host key: the program created these hosts itself.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        sock = None
        if target.proxy_command:
            command = target.proxy_command.replace("%h", target.host).replace("%p", str(target.port))
            sock = paramiko.ProxyCommand(command)
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=key, sock=sock,
                           timeout=target.dial_timeout, banner_timeout=target.dial_timeout,
                           auth_timeout=target.dial_timeout, allow_agent=False, look_for_keys=False)
            return client
        except paramiko.AuthenticationException:
            client.close()
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            last = exc
            if attempt + 1 < tries:
                time.sleep(min(0.5 * (attempt + 1), 3))
    assert last is not None
    raise ConnectionError(f"could not connect to {target.host}:{target.port} after {tries} attempts: "
                          f"{type(last).__name__}: {last}")


def run(client, command: str, stdin: str = "", timeout: float = 900) -> tuple[int, str, str]:
    """Run `command`, feed it `stdin`, return (exit status, stdout, stderr)."""
    chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
    chan_in.write(stdin)
    chan_in.channel.shutdown_write()
    out, err = chan_out.read().decode(errors="replace"), chan_err.read().decode(errors="replace")
    return chan_out.channel.recv_exit_status(), out, err
