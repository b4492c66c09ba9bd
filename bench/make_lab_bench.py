"""`make -s lab` with nothing to change, as a person types it: the wall time of the whole command
(make setup's checks, the lab's config and secrets, `pulumi up` with its refresh, the summary it
prints), median and worst of N runs. Needs root.

Brings the `lab` stack up first when it is not, and takes it down again at the end in that case.
    .venv/bin/python bench/make_lab_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import labctl  # noqa: E402


def make_lab() -> float:
    started = time.monotonic()
    subprocess.run(["make", "-s", "lab"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    was_up = (labctl.LAB_ROOT / "stacks" / "lab" / "backend").exists()
    try:
        make_lab()  # up, or already up: the runs below change nothing
        runs = [make_lab() for _ in range(args.runs)]
        print(f"make -s lab, nothing to change: median {statistics.median(runs):.2f} s, worst {max(runs):.2f} s "
              f"over {len(runs)} runs ({', '.join(f'{r:.2f}' for r in runs)})")
    finally:
        if not was_up:
            subprocess.run(["make", "-s", "lab-down"], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
