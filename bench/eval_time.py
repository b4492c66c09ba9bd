"""Evaluation time of the Pulumi program under mocks (no CLI), for 3 and 30 nodes.

Prints the resource count and the median and worst wall time over several runs.
    .venv/bin/python bench/eval_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import stack_config  # noqa: E402
from tests.program_support import run  # noqa: E402


def config_with(n: int) -> dict:
    cfg = stack_config("prod")
    hosts = ["r730", "r630", "r420"]
    cfg["haproxy-ha:cluster"]["nodes"] = [
        {"name": f"lb-{i + 1:02d}", "host": hosts[i % 3], "address": f"172.18.10.{11 + i}/24"} for i in range(n)
    ]
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    run(config_with(3))  # warm-up: imports and template compilation
    for n in (3, 30):
        times, count = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            declared = run(config_with(n))
            times.append(time.perf_counter() - started)
            count = len(declared.resources)
        print(
            f"{n:>2} nodes: {count} resources (incl. components); evaluation under mocks "
            f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
