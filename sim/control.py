"""The client side of the sim's control socket (sim/faults.py lists the ops)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class ControlError(RuntimeError):
    pass


def call(state: Path, op: str, **args: Any) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(120)
        s.connect(str(state / "control.sock"))
        s.sendall((json.dumps({"op": op, **args}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not answer["ok"]:
        raise ControlError(f"sim {op}: {answer['error']}")
    return answer["result"]
