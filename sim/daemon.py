"""The sim's PVE as a service: `python -m sim.daemon STATE_DIR` serves every fake PVE API the
sim's spec names, boots the VMs as lab nodes, keeps the guests across restarts, and takes
faults on a control socket (sim/control.py). Started and stopped by sim/stack.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import pve as simpve
from .boot import Booter
from .faults import Faults


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def load_guests(pve: simpve.SimPve, path: Path) -> None:
    """The VMs and stored images of the last run: PVE keeps them on disk, fakepve in memory."""
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    for g in saved["vms"]:
        vm = pve.add_vm(g["vmid"], g["name"], node=g["node"], status=g["status"], config=g["config"])
        vm.started_at = g.get("started_at")
    for name, volumes in saved["volumes"].items():
        if name in pve.storages:
            pve.storages[name]["volumes"] = volumes


def save_guests(pve: simpve.SimPve, path: Path) -> None:
    data = {"vms": [{"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
                     "started_at": vm.started_at, "config": vm.config} for vm in pve.vms],
            "volumes": {n: s.get("volumes", {}) for n, s in pve.storages.items()}}
    text = json.dumps(data, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


async def serve(state: Path) -> None:
    spec = json.loads((state / "spec.json").read_text())
    apis = [simpve.Api(a["key"], tuple(a["hosts"]), a["port"], a["secret"]) for a in spec["apis"]]
    pves: dict[str, simpve.SimPve] = {}
    for api in apis:
        pve = simpve.make(api, spec["host"], str(state / "pve.pem"), str(state / "pve.key"))
        load_guests(pve, state / f"guests-{api.key}.json")
        await pve.start(str(state / "pve.pem"), str(state / "pve.key"))
        pves[api.key] = pve
        log(f"PVE {api.key} ({', '.join(api.hosts)}) on {pve.url}")
    booter = Booter(spec["prefix"], log)
    for key, pve in pves.items():
        async def restarted(vm, key=key):
            await asyncio.to_thread(booter.restart, key, vm.vmid, vm.started_at or 0.0)

        async def stopped(vm, key=key):
            if vm.status == "stopped":
                await asyncio.to_thread(booter.halt, key, vm.vmid)
        async def destroyed(vm, key=key):
            await asyncio.to_thread(booter.remove, key, vm.vmid)
        pve.on_restart, pve.on_stop, pve.on_destroy = restarted, stopped, destroyed
    faults = Faults(pves, log)
    server = await asyncio.start_unix_server(faults.handle, path=str(state / "control.sock"))
    (state / "ready").write_text(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        snapshot = [(key, vm.vmid, vm.status, vm.started_at, dict(vm.config))
                    for key, pve in pves.items() for vm in pve.vms]
        await asyncio.to_thread(booter.step, snapshot)
        for key, pve in pves.items():
            save_guests(pve, state / f"guests-{key}.json")
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass
    server.close()
    for pve in pves.values():
        await pve.stop()
    (state / "ready").unlink(missing_ok=True)
    log("stopped")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m sim.daemon STATE_DIR")
    asyncio.run(serve(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
