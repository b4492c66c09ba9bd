"""Looking into and poking at a running lab: used by the scenario tests and the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..stack import Lab

PROJECT_DIR = Path(__file__).resolve().parents[2]


def ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in lines if ":" in line)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def main_pids(ns: str, name: str) -> list[int]:
    """Processes named `name` in a lab namespace whose parent is not also `name`."""
    out = []
    for pid in ns_pids(ns):
        if comm(pid) == name and comm(int(_status(pid).get("PPid", "0").strip() or 0)) != name:
            out.append(pid)
    return out


def init_pid(ns: str) -> int:
    """The host PID of a lab node's PID 1 (its reaper)."""
    for pid in ns_pids(ns):
        nspid = _status(pid).get("NSpid", "").split()
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
    raise RuntimeError(f"no init process in {ns}")


def node_exec(ns: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command inside a lab node (all its namespaces)."""
    proc = subprocess.run(["nsenter", "-t", str(init_pid(ns)), "-a", "sh", "-c", command],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{ns}: {command}: {proc.stderr or proc.stdout}")
    return proc


def kill(ns: str, name: str) -> list[int]:
    """SIGKILL the main process(es) named `name` in a lab node."""
    pids = main_pids(ns, name)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Seconds until condition() holds; raises TimeoutError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


def http_get(lab: Lab, url: str, timeout: float = 2) -> tuple[int, str]:
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.ns("cl"), "curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", url],
        capture_output=True, text=True,
    )
    body, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), body


class Load:
    """`lab.kit.load` running in the client namespace; `stop()` returns its JSON summary."""

    def __init__(self, lab: Lab, url: str, seconds: float = 120, keepalive: bool = False, workers: int = 2,
                 max_requests: int = 200_000, interval: float = 0.0, timeout: float = 2.0, cafile: str | None = None,
                 nice: int = 0):
        # nice > 0: the clients yield the CPU to the rest (in production they are other machines).
        argv = ["ip", "netns", "exec", lab.ns("cl"), "nice", "-n", str(nice), sys.executable, "-m", "lab.kit.load", url,
                "--seconds", str(seconds), "--workers", str(workers), "--max-requests", str(max_requests),
                "--interval", str(interval), "--timeout", str(timeout)]
        if keepalive:
            argv.append("--keepalive")
        if cafile:
            argv += ["--cafile", cafile]
        self.proc = subprocess.Popen(argv, cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline())["event"] == "started"  # type: ignore[union-attr]
        # Requests answered so far (the load's progress lines), for waiting on clients being served.
        self.ok = 0
        self._summary: dict | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            said = json.loads(line)
            if said.get("event") == "progress":
                self.ok = said["ok"]
            else:
                self._summary = said

    def served(self, more: int = 10, timeout: float = 10) -> None:
        """Wait until `more` requests beyond those so far were answered."""
        target = self.ok + more
        wait_for(lambda: self.ok >= target, timeout)

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self._summary is not None, "the load printed no summary"
        return self._summary

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def children(ns: str, pid: int) -> list[int]:
    """Processes in a lab namespace whose parent is `pid`."""
    return [p for p in ns_pids(ns) if int(_status(p).get("PPid", "0").strip() or 0) == pid]


def reload_haproxy(ns: str) -> int:
    """A seamless reload (USR2 to the master, which re-executes itself under the same PID)."""
    (master,) = main_pids(ns, "haproxy")
    os.kill(master, signal.SIGUSR2)
    return master


def vrrp_transitions(ns: str) -> int:
    """How many VRRP state changes the node's notify script has logged so far."""
    return len(node_exec(ns, "cat /var/log/keepalived-state-change.log", check=False).stdout.splitlines())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_loop(seconds: float, cpu: int | None = None) -> subprocess.Popen:
    """A busy loop that ends on its own after `seconds`, pinned to `cpu` if given."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]
    return subprocess.Popen([*pin, sys.executable, "-c", loop])


def end_all(procs: list[subprocess.Popen]) -> None:
    """End the processes started here, by PID, and reap them."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


class CpuBurn:
    """One busy loop per CPU of this machine, each ending on its own after `seconds`."""

    def __init__(self, seconds: float):
        self.procs = [busy_loop(seconds) for _ in range(os.cpu_count() or 1)]

    def wait(self) -> None:
        for proc in self.procs:
            proc.wait()

    def __enter__(self) -> CpuBurn:
        return self

    def __exit__(self, *exc) -> None:
        end_all(self.procs)


def age_seconds(pid: int) -> float:
    """How long a process has been running."""
    started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def rss_mib(pid: int) -> float:
    return int(_status(pid)["VmRSS"].split()[0]) / 1024
