"""SSH to a node as root (paramiko): dial with retries, run one command with a stdin.

Shared by the node steps (step.py) and NodeState (components/nodestate/provider.py). Both run
inside the engine's dynamic-provider process, never in the program itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
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
    # The node's host key as recorded in the stack state (`ssh-ed25519 AAAA...`): every
    # connection verifies it before anything is sent. Empty only for the first contact
    # (hostkey.py), which records it.
    host_key: str = ""
    node: str = ""  # the node's name, for errors
    host_key_urn: str = ""  # the resource that holds the key: what a rotation replaces

    @classmethod
    def from_props(cls, conn: dict[str, Any]) -> Target:
        return cls(host=conn["host"], port=int(conn.get("port", 22)), private_key=conn.get("privateKey") or "",
                   user=conn.get("user", "root"), proxy_command=conn.get("proxyCommand") or "",
                   dial_attempts=int(conn.get("dialAttempts", 10)), dial_timeout=float(conn.get("dialTimeout", 10)),
                   host_key=conn.get("hostKey") or "", node=conn.get("node") or "",
                   host_key_urn=conn.get("hostKeyUrn") or "")

    @property
    def label(self) -> str:
        return f"{self.node} ({self.host})" if self.node else self.host


class HostKeyMismatch(Exception):
    """The node presented another host key than the one recorded: nothing was sent to it."""


def fingerprint(key) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(line: str):
    """A paramiko PKey from an OpenSSH public key line (`TYPE BASE64 [comment]`)."""
    import paramiko

    kind, data = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def public_key_line(key) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _key(text: str):
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the SSH private key is not an Ed25519, ECDSA or RSA key in OpenSSH/PEM form")


def _sock(target: Target):
    import paramiko

    if not target.proxy_command:
        return None
    return paramiko.ProxyCommand(target.proxy_command.replace("%h", target.host).replace("%p", str(target.port)))


def connect(target: Target, attempts: int | None = None):
    """A connected paramiko client, the node's host key verified first. Retries while the
    machine boots (refused, timed out, no banner yet), up to the target's dial attempts; the
    last failure is raised. A different host key raises HostKeyMismatch at once: the key
    exchange comes before authentication, so no command, stdin or file has gone out."""
    import paramiko

    if not target.host_key:
        raise ValueError(f"{target.label}: no recorded host key to verify")
    key = _key(target.private_key)
    known = parse_public_key(target.host_key)
    tries = max(1, attempts if attempts is not None else target.dial_attempts)
    last: Exception | None = None
    for attempt in range(tries):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        client.get_host_keys().add(name, known.get_name(), known)
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=key, sock=_sock(target),
                           timeout=target.dial_timeout, banner_timeout=target.dial_timeout,
                           auth_timeout=target.dial_timeout, allow_agent=False, look_for_keys=False)
            return client
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatch(
                f"{target.label}: host key changed: expected {fingerprint(exc.expected_key)}, presented "
                f"{fingerprint(exc.key)}; nothing was sent. If the node was rebuilt or its key rotated on "
                f"purpose, check the new fingerprint on its console first, then record it: "
                f"pulumi up --refresh=false --replace "
                f"'{target.host_key_urn or '<the node hostkey URN>'}'") from None
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


# One connection per node for the whole engine run: the steps of a node (and its state read)
# share it instead of a key exchange each, as OpenSSH's ControlMaster would. Channels of one
# paramiko transport may be used from several threads at once.
_OPEN: dict[Target, Any] = {}
_LOCKS: dict[Target, threading.Lock] = {}
_OPEN_LOCK = threading.Lock()


def shared(target: Target, attempts: int | None = None):
    """A connected, verified client to `target`, reused while the node answers on it. Never
    close it; `forget` drops it after a failure that may have been the connection's."""
    with _OPEN_LOCK:
        lock = _LOCKS.setdefault(target, threading.Lock())
    with lock:  # one dial per node at a time: the others wait for it and share it
        client = _OPEN.get(target)
        if client is not None and _answers(client):
            return client
        if client is not None:
            client.close()
        client = _OPEN[target] = connect(target, attempts)
        return client


def forget(target: Target, client) -> None:
    """Drop `client` if it is still the cached one (a newer, healthy one stays)."""
    with _OPEN_LOCK:
        if _OPEN.get(target) is client:
            del _OPEN[target]
    client.close()


def _answers(client, seconds: float = 5) -> bool:
    """The node still answers on this connection (a channel opened and closed: one round trip);
    a node gone since (a cut link, a reboot) does not, and is dialled again."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return False
    try:
        transport.open_session(timeout=seconds).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means: do not reuse it
        return False


def presented_key(target: Target, attempts: int | None = None) -> str:
    """The host key the node presents (`TYPE BASE64`), read in a key exchange with no
    authentication: the first contact, whose answer is then recorded (trust on first use)."""
    import paramiko

    tries = max(1, attempts if attempts is not None else target.dial_attempts)
    last: Exception | None = None
    for attempt in range(tries):
        sock = _sock(target)
        try:
            if sock is None:
                import socket

                sock = socket.create_connection((target.host, target.port), timeout=target.dial_timeout)
            transport = paramiko.Transport(sock)
            transport.banner_timeout = target.dial_timeout
            try:
                transport.start_client(timeout=target.dial_timeout)
                return public_key_line(transport.get_remote_server_key())
            finally:
                transport.close()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            last = exc
            if attempt + 1 < tries:
                time.sleep(min(0.5 * (attempt + 1), 3))
    raise ConnectionError(f"could not reach {target.label} port {target.port} after {tries} attempts: "
                          f"{type(last).__name__}: {last}")


def run(client, command: str, stdin: str = "", timeout: float = 900) -> tuple[int, str, str]:
    """Run `command`, feed it `stdin`, return (exit status, stdout, stderr)."""
    chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
    chan_in.write(stdin)
    chan_in.channel.shutdown_write()
    out, err = chan_out.read().decode(errors="replace"), chan_err.read().decode(errors="replace")
    return chan_out.channel.recv_exit_status(), out, err
