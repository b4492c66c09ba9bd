"""The lab's LAN and its bastion: what a user has before their first `pulumi up` (a network, and
an SSH jump host they work from), made by the lab before the engine runs.

- The LAN: the lab bridge and the client namespace holding the gateway address (labctl.net_up).
- The bastion: an sshd in the client namespace, on its loopback only, that lets the stack's
  key jump to the nodes (TCP forwarding) and run nothing else.
- One forward on this machine's loopback (127.0.0.1:PORT) to the bastion: a process that binds
  the port here, then moves into the client namespace, where every connection it relays is
  made. It counts as a process of that namespace, so `net-down` ends it with the rest.

The program reaches the nodes as it would in production: pulumi-command's `connection.proxy`,
and our dynamic providers' paramiko jump (components/remote/ssh.py), both through
cluster.bastion = {host: 127.0.0.1, port: PORT, hostKey: the bastion's key}.

    python3 -m lab.bastion forward PORT NETNS   (the relay; started by `up`)
"""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from . import labctl

CLONE_NEWNET = 0x40000000
SSHD_PORT = 22


def sshd_config(folder: Path) -> str:
    return textwrap.dedent(
        f"""\
        # The lab's bastion: a jump host only (no shell, no tunnel device, no X11).
        ListenAddress 127.0.0.1
        Port {SSHD_PORT}
        HostKey {folder}/ssh_host_ed25519_key
        AuthorizedKeysFile {folder}/authorized_keys
        PidFile {folder}/sshd.pid
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        AllowTcpForwarding yes
        PermitTTY no
        X11Forwarding no
        PermitTunnel no
        ForceCommand /bin/false
        """
    )


def up(prefix: str, gateway_cidr: str, gateway6_cidr: str, port: int, host_key: Path, authorized_key: str) -> None:
    """The LAN, the bastion and the forward, each left as it is when it already runs."""
    labctl.net_up(prefix, gateway_cidr, gateway6_cidr)
    folder = labctl.lab_dir(prefix) / "bastion"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ns = labctl.netns(prefix, "cl")
    if not _alive(folder / "sshd.pid", "sshd"):
        key = folder / "ssh_host_ed25519_key"
        key.write_bytes(host_key.read_bytes())
        key.chmod(0o600)
        (folder / "authorized_keys").write_text(authorized_key.strip() + "\n")
        (folder / "sshd_config").write_text(sshd_config(folder))
        # sshd wants its privilege-separation folder in /run: a tmpfs of this mount namespace
        # only (ip netns exec makes its mounts slaves of this machine's), never this machine's /run.
        _spawn(["ip", "netns", "exec", ns, "sh", "-c",
                f"mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/sshd && "
                f"exec /usr/sbin/sshd -D -e -f {folder}/sshd_config"], folder / "sshd.log")
        _wait(lambda: _alive(folder / "sshd.pid", "sshd") and labctl.listening(ns, SSHD_PORT), folder / "sshd.log")
    if not _alive(folder / "forward.pid", "python"):
        _spawn([sys.executable, "-m", "lab.bastion", "forward", str(port), ns], folder / "forward.log",
               pidfile=folder / "forward.pid")
        _wait(lambda: _connects(port), folder / "forward.log")


def _spawn(argv: list[str], log: Path, pidfile: Path | None = None) -> None:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=labctl.PROJECT_DIR, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    if pidfile is not None:
        pidfile.write_text(f"{proc.pid}\n")


def _alive(pidfile: Path, comm: str) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith(comm)
    except (OSError, ValueError, IndexError):
        return False


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _wait(ready, log: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise SystemExit(f"lab bastion: not ready after {seconds} s:\n{log.read_text()[-2000:] if log.exists() else ''}")


def free_port() -> int:
    """A loopback port nothing listens on now (the lab records it once per stack)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the forward ------------------------------------------------------------------------------


def forward(port: int, ns: str) -> None:
    """Listen on this machine's loopback, then enter `ns`: every relayed connection is made there."""
    listener = socket.create_server(("127.0.0.1", port))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {ns}")
    os.close(fd)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client,), daemon=True).start()


def _relay(client: socket.socket) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", SSHD_PORT), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    peers = {client: upstream, upstream: client}
    with selectors.DefaultSelector() as sel:
        for s in peers:
            sel.register(s, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    peers[key.fileobj].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "forward":
        forward(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit(__doc__)
