"""SSH to a node as root (paramiko), through the bastion when there is one: dial with retries,
run one command with a stdin.

The reads pulumi-command has no resource for: HostKey's first contact (hostkey.py) and
NodeState's read and restore (components/nodestate/provider.py). Both run inside the engine's
dynamic-provider process, never in the program itself. The node steps are pulumi-command's
`remote.Command`s (components/remote/commands.py), which reach the node the same way.
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
class Bastion:
    """The jump host (cluster.bastion): its host key is verified like a node's."""

    host: str
    port: int
    user: str
    host_key: str

    @classmethod
    def from_props(cls, props: dict[str, Any] | None) -> Bastion | None:
        if not props:
            return None
        return cls(props["host"], int(props.get("port") or 22), props.get("user") or "root", props["hostKey"])


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    private_key: str
    user: str = "root"
    # The jump host every connection goes through (a direct TCP connection when None).
    bastion: Bastion | None = None
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
                   user=conn.get("user", "root"), bastion=Bastion.from_props(conn.get("bastion")),
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


# One connection per node, and one to the bastion, for the whole engine run: a node's reads and
# restores share it instead of a key exchange each, as OpenSSH's ControlMaster would. Channels of
# one paramiko transport may be used from several threads at once.
_OPEN: dict[Target, Any] = {}
_LOCKS: dict[Target, threading.Lock] = {}
_OPEN_LOCK = threading.Lock()
_BASTIONS: dict[tuple[Bastion, str], Any] = {}


def _sock(target: Target):
    """A channel to the node through the bastion, or None for a direct connection."""
    if target.bastion is None:
        return None
    import paramiko

    client = _bastion(target.bastion, target.private_key, target.dial_timeout)
    try:
        return client.get_transport().open_channel("direct-tcpip", (target.host, target.port), ("127.0.0.1", 0),
                                                    timeout=target.dial_timeout)
    except paramiko.ChannelException:
        raise  # the bastion answered: the node did not (yet)
    except Exception:
        _drop(_BASTIONS, (target.bastion, target.private_key), client)
        raise


def _bastion(jump: Bastion, private_key: str, timeout: float):
    """The connection to the bastion, shared by every node's channels; its host key verified
    before anything is sent through it."""
    import paramiko

    with _OPEN_LOCK:
        client = _BASTIONS.get((jump, private_key))
    if client is not None and _answers(client):
        return client
    if client is not None:
        _drop(_BASTIONS, (jump, private_key), client)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = parse_public_key(jump.host_key)
    client.get_host_keys().add(jump.host if jump.port == 22 else f"[{jump.host}]:{jump.port}", known.get_name(), known)
    try:
        client.connect(jump.host, port=jump.port, username=jump.user, pkey=_key(private_key), timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, allow_agent=False, look_for_keys=False)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyMismatch(f"bastion {jump.host}:{jump.port}: host key changed: expected "
                              f"{fingerprint(exc.expected_key)}, presented {fingerprint(exc.key)}; nothing was sent. "
                              "Check the key on the bastion's console, then set haproxy-ha:cluster.bastion.hostKey"
                              ) from None
    except Exception:
        client.close()
        raise
    with _OPEN_LOCK:
        _BASTIONS[(jump, private_key)] = client
    return client


def _drop(cache: dict, key, client) -> None:
    with _OPEN_LOCK:
        if cache.get(key) is client:
            del cache[key]
    client.close()


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
    _drop(_OPEN, target, client)


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
        try:
            # Inside the retry: through a bastion, a node still booting is a refused channel.
            sock = _sock(target)
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
