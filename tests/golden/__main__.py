"""`python -m tests.golden [--write] [--project DIR]`: the sha256 of every file each shipped
stack renders (`python -m components render STACK`), with fixed stand-in secrets.

The TLS bundles and the CA files cut from them are left out: they are the user's bundles (here
random placeholders) copied as they are; every other file comes from the templates and the model. `--write` records the
hashes in tests/golden/rendered.sha256 (do it when a change is meant to change the files);
tests/test_layout.py checks that a render matches them, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD = HERE / "rendered.sha256"
STACKS = ("prod", "k3s", "lab", "lab-aa")
SECRETS = {"HAPROXY_HA_STATS_PASSWORD": "golden-stats-password", "HAPROXY_HA_VRRP_PASSWORD": ""}


def shipped(project: Path, into: Path) -> Path:
    """The shipped stack files only (not a `make lab` copy with this machine's edits)."""
    (into / "lab" / "stacks").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.k3s.yaml", "lab/stacks/Pulumi.lab.yaml",
                 "lab/stacks/Pulumi.lab-aa.yaml"):
        (into / name).write_bytes((project / name).read_bytes())
    return into


def hashes(project: Path) -> list[str]:
    lines = []
    env = {**os.environ, **SECRETS}
    with tempfile.TemporaryDirectory() as tmp:
        stacks = shipped(project, Path(tmp, "project"))
        for stack in STACKS:
            out = Path(tmp, stack)
            subprocess.run([sys.executable, "-m", "components", "render", stack, "--out", str(out), "--no-validate",
                            "--project", str(stacks)], cwd=project, env=env, check=True, capture_output=True)
            for path in sorted(out.rglob("*")):
                if path.is_file() and not path.name.startswith(("tls-", "ca-")):
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    lines.append(f"{digest}  {stack}/{path.relative_to(out)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--project", type=Path, default=HERE.parent.parent)
    args = parser.parse_args()
    lines = hashes(args.project)
    if args.write:
        RECORD.write_text("\n".join(lines) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
