"""Where a pipeline's process goes on a cluster: the ingestor node running the fewest
pipelines, avoiding the node its last process ran on when that one crashed (it may be the
node that was lost, still listed alive until Ray notices). Ray's own SPREAD strategy does not
spread zero-CPU actors under a label selector (measured: 5 of 6 on one of two nodes), so the
runtime pins the chosen node and lets Ray fall back to any ingestor node when it is gone.

Plain Python: `Placement` keeps which node each running pipeline is on, as the runtime
learns it from start and health answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["Placement"]


class Placement:
    """Which node each pipeline runs on, and the choice of a node for the next start."""

    def __init__(self) -> None:
        self._nodes: dict[str, str] = {}  # pipeline id -> node id, while it runs
        self._last: dict[str, str] = {}  # pipeline id -> the node its last process ran on

    def placed(self, pipeline_id: str, node: str | None) -> None:
        """The pipeline runs on `node` (None: not known)."""
        if node:
            self._nodes[pipeline_id] = self._last[pipeline_id] = node

    def gone(self, pipeline_id: str) -> None:
        """The pipeline's process was stopped or died: it no longer counts on its node."""
        self._nodes.pop(pipeline_id, None)

    def node_of(self, pipeline_id: str) -> str | None:
        return self._nodes.get(pipeline_id)

    def choose(self, pipeline_id: str, candidates: Iterable[str]) -> str | None:
        """The candidate node running the fewest pipelines (ties: the first by id), not the
        node the pipeline's last process ran on unless no other is left; None when there is
        no candidate (Ray then places it by its label selector alone)."""
        nodes = sorted(set(candidates))
        last = self._last.get(pipeline_id)
        if len(nodes) > 1 and last in nodes:
            nodes.remove(last)
        if not nodes:
            return None
        load = Counter(node for pid, node in self._nodes.items() if pid != pipeline_id)
        return min(nodes, key=lambda node: (load[node], node))
