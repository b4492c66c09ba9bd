"""Retired: what stacks made before pulumi-command ran our steps still hold.

Until then, every remote and lab step was a `Step`, a dynamic resource whose provider the engine
unpickles by reference as `components.remote.step.StepProvider`. Such a stack's next `pulumi up`
declares `remote.Command`s and `local.Command`s instead, and deletes the old `Step`s: for that
the engine must load this class. Deleting a `Step` does nothing: its work lives on in the new
commands (a lab node's `node-down`, for one, must not run under the node that replaces it).

Keep this file until 2027-06-30 (six months after the change, 2026-12-04); a stack that has not
run one `pulumi up` since then must export its state and drop its `Step` resources by hand.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import ResourceProvider


class StepProvider(ResourceProvider):
    """Reads give back what the state holds; deletes leave everything as it is."""

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None
