"""What an interrupted `pulumi up` leaves in a lab stack's file backend, and the lab's answer.

Killed (kill -9, a closed terminal), the CLI leaves
- its stack lock, `.pulumi/locks/<org>/<project>/<stack>/<uuid>.json` with the pid and host
  that took it: every later update stops with "the stack is currently locked";
- pending CREATE operations in the checkpoint: the next `up --refresh` creates those resources
  again (every lab step may run again: node-up keeps a node that is up, the node scripts are
  idempotent) but never clears the entries, which an interactive `pulumi refresh` then asks
  about. Pending UPDATEs and DELETEs the next update drops by itself.

The lab removes a lock only when the process that took it on this machine is gone (`pulumi
cancel`), and clears pending CREATEs (`pulumi refresh --clear-pending-creates`), saying so. On a
user's own stack these are the two commands docs/proxmox.md names.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path


def stale_locks(backend: Path, stack: str) -> list[dict]:
    """The stack's locks whose process, on this machine, has ended."""
    found = []
    for lock in (backend / ".pulumi" / "locks").glob(f"**/{stack}/*.json"):
        try:
            info = json.loads(lock.read_text())
        except (OSError, ValueError):
            continue
        if info.get("hostname") == socket.gethostname() and not _alive(int(info.get("pid") or 0)):
            found.append(info)
    return found


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}/comm").read_text().strip() == "pulumi"


def pending_creates(backend: Path, stack: str) -> list[str]:
    """The URNs of the checkpoint's pending CREATE operations."""
    for checkpoint in (backend / ".pulumi" / "stacks").glob(f"**/{stack}.json"):
        try:
            latest = json.loads(checkpoint.read_text()).get("checkpoint", {}).get("latest") or {}
        except (OSError, ValueError):
            continue
        return [op["resource"]["urn"] for op in latest.get("pending_operations") or []
                if op.get("type") == "creating"]
    return []


def recover(lab) -> None:
    """Make a lab stack that an interrupted run left behind usable again, saying what was done."""
    backend = lab.state_dir / "backend"
    for lock in stale_locks(backend, lab.stack):
        lab.log(f"lab {lab.stack}: removing the lock of an interrupted pulumi (pid {lock.get('pid')}, "
                f"{lock.get('timestamp')}): pulumi cancel")
        lab.pulumi("cancel", "--yes")
    pending = pending_creates(backend, lab.stack)
    if pending:
        lab.log(f"lab {lab.stack}: {len(pending)} create(s) an interrupted pulumi left pending "
                f"({', '.join(u.rsplit('::', 1)[1] for u in pending)}): pulumi refresh --clear-pending-creates")
        lab.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
