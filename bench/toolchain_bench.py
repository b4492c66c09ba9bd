"""What `make toolchain` costs: a cold build (empty module and build caches, nothing built)
and a warm one (caches and binaries kept), in a scratch folder; this machine's own caches and
toolchain are not touched.
    .venv/bin/python bench/toolchain_bench.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([str(ROOT / "tools" / "toolchain.sh")], env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1, help="cold builds (each about 5 minutes on 2 cores)")
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.trials):
        scratch = Path(tempfile.mkdtemp(prefix="hha-toolchain-"))
        try:
            env = {**os.environ, "GOMODCACHE": str(scratch / "mod"), "GOCACHE": str(scratch / "build"),
                   "HAPROXY_HA_TOOLCHAIN": str(scratch / "toolchain"), "GOFLAGS": "-modcacherw",
                   # Not the PATH's pulumi: this measures the build.
                   "PATH": ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "pulumi").exists())}
            cold.append(run(env))
            warm.append(run(env))
            size = (scratch / "toolchain" / "bin" / "pulumi").stat().st_size / 1e6
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"make toolchain, cold (empty go caches, from the Go module proxy): median {statistics.median(cold):.0f} s, "
          f"worst {max(cold):.0f} s over {len(cold)} trials")
    print(f"make toolchain, warm (nothing to rebuild): median {statistics.median(warm):.2f} s, "
          f"worst {max(warm):.2f} s; pulumi binary {size:.0f} MB")


if __name__ == "__main__":
    main()
