"""Run the NodeState provider's real code for the replay runner, inside the lab's client
namespace (where the nodes are reachable):

    python -m lab.nodestate_exec read|create|update  < {"id": ..., "olds": {...}, "news": {...}}

Prints the provider's outputs as one JSON line; a failure prints its message and exits 1.
"""

from __future__ import annotations

import json
import sys

from components.nodestate_provider import NodeStateProvider


def main() -> int:
    op = sys.argv[1]
    request = json.load(sys.stdin)
    provider = NodeStateProvider()
    try:
        if op == "read":
            outs = provider.read(request["id"], request["olds"]).outs
        elif op == "create":
            outs = provider.create(request["news"]).outs
        else:
            outs = provider.update(request["id"], request["olds"], request["news"]).outs
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(outs, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
