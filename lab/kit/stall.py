"""The hard case for failure detection: a node's keepalived sharing one CPU with busy loops, as
on a 1-vCPU VM whose host is busy. Only the loops started here are ever ended, by PID."""

from __future__ import annotations

import os
import subprocess

from . import probe


def keepalived_pids(ns: str) -> list[int]:
    """Every keepalived process of a lab node (the parent and its VRRP child)."""
    return [p for p in probe.ns_pids(ns) if probe.comm(p) == "keepalived"]


def vrrp_pid(ns: str) -> int:
    """keepalived's VRRP child: the process that sends the adverts."""
    (parent,) = probe.main_pids(ns, "keepalived")
    (child,) = probe.children(ns, parent)
    return child


class SharedCpu:
    """Pins every thread of `pids` to CPU `cpu` and runs `loops` busy loops pinned there for
    `seconds`; on exit the loops are ended and the threads get their CPUs back."""

    def __init__(self, pids: list[int], seconds: float, loops: int = 1, cpu: int = 0):
        self.saved: dict[int, set[int]] = {}
        self.loops: list[subprocess.Popen] = []
        try:
            for pid in pids:
                for task in os.listdir(f"/proc/{pid}/task"):
                    tid = int(task)
                    self.saved[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, {cpu})
            self.loops = [probe.busy_loop(seconds, cpu) for _ in range(loops)]
        except BaseException:
            self.close()
            raise

    def wait(self) -> None:
        for proc in self.loops:
            proc.wait()

    def close(self) -> None:
        probe.end_all(self.loops)
        for tid, cpus in self.saved.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass  # that thread has ended

    def __enter__(self) -> SharedCpu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
