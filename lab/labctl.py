"""Lab machines on this host: network namespaces on a private bridge, each node with its own
mount, PID and UTS namespace, sshd, /etc/haproxy, /etc/keepalived, /run and /var/log.

Called by the program's local Steps (components/labnode.py; stdlib only, runs with any python3):

    python3 -m lab.labctl net-up   PREFIX GATEWAY/PLEN
    python3 -m lab.labctl node-up  PREFIX INDEX NAME ADDRESS/PLEN GATEWAY 'PUBLIC KEY'
    python3 -m lab.labctl web-up   PREFIX INDEX ADDRESS/PLEN GATEWAY PORT
    python3 -m lab.labctl node-down PREFIX INDEX NAME
    python3 -m lab.labctl web-down  PREFIX INDEX
    python3 -m lab.labctl node-reboot PREFIX INDEX NAME   (every process ends, /run empties, boot)
    python3 -m lab.labctl node-halt PREFIX INDEX NAME     (every process ends; boots again with node-reboot)
    python3 -m lab.labctl net-down PREFIX        (also ends every process in PREFIX's namespaces)

Nothing here touches the host's own network, /etc/ssh, /root/.ssh or services: every link is
created inside a lab namespace, every file under the lab directory, and only processes inside
the lab's namespaces are ever signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

LAB_ROOT = Path(os.environ.get("HAPROXY_HA_LAB_DIR", "/var/lib/haproxy-ha-lab"))
# Where `python3 -m lab.kit.backend` resolves.
PROJECT_DIR = Path(__file__).resolve().parent.parent
# Directories each node gets privately, bind-mounted over the host's.
NODE_DIRS = {
    "var-lib-haproxy": "/var/lib/haproxy",
    "var-lib-haproxy-ha": "/var/lib/haproxy-ha",
    "var-lib-logrotate": "/var/lib/logrotate",
    "var-log": "/var/log",
}
# Directories a node sees as the host's plus its own changes (an overlay whose upper layer is
# the node's): whatever the program writes there stays in the node.
NODE_OVERLAYS = {"etc": "/etc", "usr-sbin": "/usr/sbin", "usr-local": "/usr/local"}
# PID 1 of a node reaps the daemons that double-fork into the background.
REAPER = (
    "import os, time\n"
    "while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        time.sleep(1)\n"
)
# Debian 12 ships rsyslog for systemd only; the node gets an OpenRC service like Alpine's
# (aports main/rsyslog/rsyslog.initd), so `rc-service rsyslog start` works on both.
# The image's `networking` service (ifupdown-ng) provides `net`, which haproxy's script needs;
# a lab node's interface is configured by labctl instead, so this stand-in only provides it.
NETWORKING_INITD = """#!/sbin/openrc-run
# lab node: its interface is configured by the lab (lab/labctl.py); this stands in for the
# image's networking service, which provides `net`.
description="lab: the network the lab configured"

depend() {
    provide net
}

start() {
    return 0
}
"""
RSYSLOG_INITD = """#!/sbin/openrc-run
# lab node: the OpenRC service Alpine's rsyslog package ships (Debian 12 has none).
command=/usr/sbin/rsyslogd
command_args="-i /run/rsyslogd.pid -f /etc/rsyslog.conf"
pidfile=/run/rsyslogd.pid
extra_started_commands="reload"

reload() {
    ebegin "Reloading $RC_SVCNAME"
    start-stop-daemon --signal HUP --pidfile "$pidfile"
    eend $?
}
"""


def sh(*argv: str, check: bool = True, capture: bool = False) -> str:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"labctl: {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout if capture else ""


def lab_dir(prefix: str) -> Path:
    return LAB_ROOT / prefix


def netns(prefix: str, role: str) -> str:
    return f"{prefix}-{role}"


def namespaces(prefix: str) -> list[str]:
    out = sh("ip", "netns", "list", capture=True)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process in a lab namespace: all of them were started by the lab."""
    for _ in range(20):
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False, capture=True).split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def mac_for(address: str) -> str:
    """A locally administered MAC derived from the IPv4 address: a re-created lab host keeps
    its MAC, so its neighbours' ARP caches stay right (real hosts would send gratuitous ARP)."""
    octets = [int(o) for o in address.split("/")[0].split(".")]
    return "02:00:" + ":".join(f"{o:02x}" for o in octets)


def attach(prefix: str, role: str, port: str, address: str, gateway: str | None,
           address6: str = "", gateway6: str = "") -> str:
    """A namespace with eth0 on the lab bridge (the veth is created inside the namespaces);
    IPv6 too when given (documentation prefix 2001:db8::/32 only)."""
    ns, bridge = netns(prefix, role), netns(prefix, "br")
    if ns in namespaces(prefix):
        raise SystemExit(f"labctl: namespace {ns} already exists")
    sh("ip", "netns", "add", ns)
    # A port left by a namespace deleted a moment ago (the kernel frees it asynchronously).
    sh("ip", "-n", bridge, "link", "del", port, check=False)
    sh("ip", "-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
       "address", mac_for(address))
    sh("ip", "-n", bridge, "link", "set", port, "master", "br0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    if gateway:
        sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
    if address6:
        if not address6.lower().startswith("2001:db8:"):
            raise SystemExit(f"labctl: {address6} is outside the documentation prefix 2001:db8::/32")
        sh("ip", "-n", ns, "-6", "addr", "add", address6, "dev", "eth0")
        if gateway6:
            sh("ip", "-n", ns, "-6", "route", "add", "default", "via", gateway6)
    return ns


def attach_heartbeat(prefix: str, ns: str, port: str, address: str) -> None:
    """eth1 of namespace `ns` on the heartbeat bridge (br1, made with the first), `address` on it."""
    bridge = netns(prefix, "br")
    # The nodes come up in parallel: whichever is first makes the bridge, the others find it.
    sh("ip", "-n", bridge, "link", "add", "br1", "type", "bridge", check=False)
    sh("ip", "-n", bridge, "link", "set", "br1", "up")
    sh("ip", "-n", bridge, "link", "del", port, check=False)
    sh("ip", "-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", ns,
       "address", mac_for(address))
    sh("ip", "-n", bridge, "link", "set", port, "master", "br1", "up")
    sh("ip", "-n", ns, "addr", "add", address, "dev", "eth1")
    sh("ip", "-n", ns, "link", "set", "eth1", "up")


def net_up(prefix: str, gateway_cidr: str, gateway6_cidr: str = "") -> None:
    bridge = netns(prefix, "br")
    if bridge in namespaces(prefix):
        return  # idempotent: the bridge is already there
    sh("ip", "netns", "add", bridge)
    sh("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", bridge, "link", "set", "br0", "up")
    # The client namespace holds the gateway address: SSH and test traffic start there.
    attach(prefix, "cl", "cl", gateway_cidr, None, gateway6_cidr)
    lab_dir(prefix).mkdir(parents=True, exist_ok=True)
    print(f"lab network {prefix}: bridge {bridge}, client {netns(prefix, 'cl')} at {gateway_cidr} {gateway6_cidr}")


def net_down(prefix: str) -> None:
    for ns in namespaces(prefix):
        kill_namespace_processes(ns)
    for ns in namespaces(prefix):
        sh("ip", "netns", "del", ns, check=False)
    shutil.rmtree(lab_dir(prefix), ignore_errors=True)
    print(f"lab network {prefix}: removed")


def _node_init(node_dir: Path, name: str) -> str:
    overlays = "\n".join(
        f'mount -t overlay overlay -o lowerdir={dst},upperdir="{node_dir / src}",workdir="{node_dir / src}-work" {dst}'
        for src, dst in NODE_OVERLAYS.items()
    )
    mounts = "\n".join(f'mount --bind "{node_dir / src}" {dst}' for src, dst in NODE_DIRS.items())
    return textwrap.dedent(
        """\
        #!/bin/sh
        # PID 1 of lab node {name}: private mounts, host name, syslog, sshd, then reap orphans.
        set -eu
        mount -t tmpfs -o mode=0755 tmpfs /run
        mkdir -p /run/sshd /run/haproxy
        # OpenRC's state, as after boot: openrc-run services (rsyslog) need it.
        mkdir -p /run/openrc && cd /run/openrc
        mkdir daemons exclusive failed hotplugged inactive options scheduled started starting stopping tmp wasinactive
        echo default > softlevel && cd /
        # The boot runlevel is done: the network (the lab's stand-in for networking) is up.
        ln -s /etc/init.d/networking /run/openrc/started/networking
        # A /dev of its own: its /dev/log is the node's syslog, never the host's.
        mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
        mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
        mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
        mkdir /dev/pts /dev/shm
        mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
        ln -s pts/ptmx /dev/ptmx
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        ln -s /proc/self/fd /dev/fd
        ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
        {overlays}
        {mounts}
        hostname "$(cat /etc/hostname)"
        # As on the Alpine image: busybox syslogd on /dev/log, writing /var/log/messages.
        busybox syslogd -t
        # As on the Alpine image (openssh-server-pam): the daemon is sshd.pam, /run/sshd.pid.
        /usr/sbin/sshd.pam
        # A reboot: OpenRC starts the boot runlevel (the firewall), then the default one, what the
        # program enabled, in its order.
        if [ "${{1:-}}" = boot ]; then
            ( (openrc boot; openrc default) > /var/log/openrc-boot.log 2>&1 &)
        fi
        exec python3 -c '{reaper}'
        """
    ).format(name=name, overlays=overlays, mounts=mounts, reaper=REAPER)


def _whiteout(path: Path) -> None:
    """Hide the lower layer's file in an overlay (a 0/0 character device in the upper layer)."""
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))


def _sshd_config() -> str:
    # A fresh machine's permissive defaults; the program's bootstrap step hardens them.
    return textwrap.dedent(
        """\
        Port 22
        HostKey /etc/ssh/ssh_host_ed25519_key
        AuthorizedKeysFile /etc/ssh/authorized_keys
        PermitRootLogin yes
        PasswordAuthentication yes
        UsePAM no
        PidFile /run/sshd.pid
        """
    )


def node_up(prefix: str, index: str, name: str, address: str, gateway: str, public_key: str,
            address6: str = "", gateway6: str = "", heartbeat: str = "") -> None:
    """A lab node: eth0 on the lab LAN; with `heartbeat` (its address there), eth1 on the lab's
    heartbeat bridge, which the client namespace is not on (a VM's second NIC)."""
    node_dir = lab_dir(prefix) / "nodes" / name
    network = {"address": address, "gateway": gateway, "address6": address6, "gateway6": gateway6}
    if heartbeat:
        network["heartbeat"] = heartbeat
    if running(prefix, f"n{index}", node_dir, network):
        # Made by an earlier run (an interrupted one, or the stack's earlier steps): a machine
        # that is there is not made again.
        print(f"lab node {name}: already up")
        return
    if node_dir.exists():
        shutil.rmtree(node_dir)
    for sub in [*NODE_DIRS, *NODE_OVERLAYS, *(o + "-work" for o in NODE_OVERLAYS)]:
        (node_dir / sub).mkdir(parents=True, mode=0o755)
    for mountpoint in NODE_DIRS.values():  # at most an empty mount point on the host
        Path(mountpoint).mkdir(parents=True, exist_ok=True)
    etc = node_dir / "etc"
    # Like the Alpine cloud image: no resolver configuration until bootstrap writes one.
    _whiteout(etc / "resolv.conf")
    (etc / "hostname").write_text(f"{name}\n")  # PVE's cloud-init names the VM
    # Its runlevels hold only what the program enables, as on the image: this machine's own
    # services (whatever its packages enabled) are hidden from the node.
    for level in Path("/etc/runlevels").glob("*"):
        for entry in level.iterdir() if level.is_dir() else ():
            (etc / "runlevels" / level.name).mkdir(parents=True, exist_ok=True)
            _whiteout(etc / "runlevels" / level.name / entry.name)
    ssh_dir = etc / "ssh"
    ssh_dir.mkdir(mode=0o755)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-host", "-f", str(ssh_dir / "ssh_host_ed25519_key"))
    (ssh_dir / "sshd_config").write_text(_sshd_config())
    (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    (etc / "init.d").mkdir(mode=0o755)
    (etc / "init.d" / "rsyslog").write_text(RSYSLOG_INITD)
    (etc / "init.d" / "rsyslog").chmod(0o755)
    (etc / "init.d" / "networking").write_text(NETWORKING_INITD)
    (etc / "init.d" / "networking").chmod(0o755)
    (etc / "runlevels" / "boot").mkdir(parents=True, exist_ok=True)
    (etc / "runlevels" / "boot" / "networking").unlink(missing_ok=True)
    (etc / "runlevels" / "boot" / "networking").symlink_to("/etc/init.d/networking")
    # sshd exists only as sshd.pam, the name openssh-server-pam gives it on Alpine.
    sbin = node_dir / "usr-sbin"
    _whiteout(sbin / "sshd")
    shutil.copy2("/usr/sbin/sshd", sbin / "sshd.pam")
    init = node_dir / "init.sh"
    init.write_text(_node_init(node_dir, name))
    # Its boot-time network (what the image's network config would bring up again at boot).
    (node_dir / "network.json").write_text(json.dumps(network))

    ns = attach(prefix, f"n{index}", f"n{index}", address, gateway, address6, gateway6)
    if heartbeat:
        attach_heartbeat(prefix, ns, f"h{index}", heartbeat)
    _start(ns, node_dir)
    print(f"lab node {name}: namespace {ns}, {address}, sshd up")


def running(prefix: str, role: str, folder: Path, spec: dict, name: str = "network.json") -> bool:
    """Whether the namespace is up with processes in it, made from the same spec (from any, when
    `spec` is empty)."""
    try:
        same = not spec or json.loads((folder / name).read_text()) == spec
    except (OSError, ValueError):
        return False
    ns = netns(prefix, role)
    return same and ns in namespaces(prefix) and bool(sh("ip", "netns", "pids", ns, check=False, capture=True).strip())


def _start(ns: str, node_dir: Path, *init_args: str) -> None:
    """PID 1 of the node (init.sh) in fresh mount, PID and UTS namespaces; returns once sshd listens."""
    console = open(node_dir / "console.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "--mount", "--pid", "--uts", "--fork", "--mount-proc",
         "--propagation", "private", "--kill-child", "sh", str(node_dir / "init.sh"), *init_args],
        stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True,
    )
    (node_dir / "unshare.pid").write_text(f"{proc.pid}\n")
    wait_listening(ns, 22, proc, node_dir / "console.log")


def node_reboot(prefix: str, index: str, name: str) -> None:
    """A reboot, as faithful as a namespace allows: every process of the node ends at once (no
    clean shutdown: its VIPs are not released by keepalived), /run starts empty, /etc and /var
    stay, the interface has only its boot-time addresses, then the node boots: init (mounts,
    syslog, sshd) and OpenRC's default runlevel."""
    ns = netns(prefix, f"n{index}")
    node_dir = lab_dir(prefix) / "nodes" / name
    kill_namespace_processes(ns)
    net = json.loads((node_dir / "network.json").read_text())
    sh("ip", "-n", ns, "link", "set", "eth0", "down")
    sh("ip", "-n", ns, "addr", "flush", "dev", "eth0")
    sh("ip", "-n", ns, "addr", "add", net["address"], "dev", "eth0")
    if net["address6"]:
        sh("ip", "-n", ns, "-6", "addr", "add", net["address6"], "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "route", "replace", "default", "via", net["gateway"])
    if net["gateway6"]:
        sh("ip", "-n", ns, "-6", "route", "replace", "default", "via", net["gateway6"])
    if net.get("heartbeat"):
        sh("ip", "-n", ns, "addr", "flush", "dev", "eth1")
        sh("ip", "-n", ns, "addr", "add", net["heartbeat"], "dev", "eth1")
    _start(ns, node_dir, "boot")
    print(f"lab node {name}: rebooted")


def node_halt(prefix: str, index: str, name: str) -> None:
    """Powered off: every process of the node ends at once; its namespace, interface and files
    stay, so `node-reboot` boots it again from the same disk (the sim's VM stop and start)."""
    kill_namespace_processes(netns(prefix, f"n{index}"))
    print(f"lab node {name}: halted")


def listening(ns: str, port: int) -> bool:
    """A TCP socket listens on `port` in namespace `ns`."""
    return bool(sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}", capture=True, check=False).strip())


def wait_listening(ns: str, port: int, proc: subprocess.Popen, log: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"labctl: {ns} exited early:\n{log.read_text()[-2000:]}")
        if listening(ns, port):
            return
        time.sleep(0.05)
    raise SystemExit(f"labctl: nothing listens on port {port} in {ns} after {seconds} s")


def node_down(prefix: str, index: str, name: str) -> None:
    ns = netns(prefix, f"n{index}")
    if ns in namespaces(prefix):
        kill_namespace_processes(ns)
        sh("ip", "netns", "del", ns, check=False)
        # Its cables too, now: the kernel would free them a moment later, and a node made again
        # at once under the same number (a VM replaced) would find its ports still there.
        for port in (f"n{index}", f"h{index}"):
            sh("ip", "-n", netns(prefix, "br"), "link", "del", port, check=False)
    shutil.rmtree(lab_dir(prefix) / "nodes" / name, ignore_errors=True)
    print(f"lab node {name}: removed")


COMMANDS = {
    "net-up": net_up, "net-down": net_down, "node-up": node_up, "node-down": node_down,
    "node-reboot": node_reboot, "node-halt": node_halt,
}


def main(argv: list[str]) -> None:
    from .webhosts import web_down, web_up  # they build on this module's helpers

    commands = {**COMMANDS, "web-up": web_up, "web-down": web_down}
    if not argv or argv[0] not in commands:
        raise SystemExit(f"usage: python3 -m lab.labctl {{{','.join(commands)}}} ARGS...")
    if os.geteuid() != 0:
        raise SystemExit("labctl: the lab needs root (network namespaces)")
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
