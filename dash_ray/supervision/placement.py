"""Where a pipeline's process goes on a cluster: the ingestor node running the fewest
pipelines (dedicated and shared alike), avoiding the node its last process ran on when that
one crashed (it may be the node that was lost, still listed alive until Ray notices). Ray's own
SPREAD strategy does not spread zero-CPU actors under a label selector (measured: 5 of 6 on one
of two nodes), so the runtime pins the chosen node and lets Ray fall back to any ingestor node
when it is gone.

A dedicated pipeline gets an actor of its own on the chosen node (`choose`). A shared one
(`choose_host`) joins a host actor with room on the chosen node, or a new host actor made
there when none has room, so shared pipelines spread over the ingestor nodes as dedicated
ones do instead of filling one host after another.

Plain Python: `Placement` keeps which node each running (or starting: `reserve`) pipeline is
on, as the runtime learns it from start and health answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HostRoom", "Placement"]


@dataclass(frozen=True)
class HostRoom:
    """A live shared host actor: its name, its node (None: not known yet), how many more
    pipelines it takes."""

    name: str
    node: str | None
    free: int


class Placement:
    """Which node each pipeline runs on, and the choice of a node for the next start."""

    def __init__(self) -> None:
        self._nodes: dict[str, str] = {}  # pipeline id -> node id, while it runs or starts
        self._last: dict[str, str] = {}  # pipeline id -> the node its last process ran on

    def placed(self, pipeline_id: str, node: str | None) -> None:
        """The pipeline runs on `node` (None: not known)."""
        if node:
            self._nodes[pipeline_id] = self._last[pipeline_id] = node

    def reserve(self, pipeline_id: str, node: str | None) -> None:
        """The pipeline is starting on `node`: it counts there already (so starts in the same
        moment spread too) until `placed` says where it runs or `gone` that it does not."""
        if node:
            self._nodes[pipeline_id] = node

    def gone(self, pipeline_id: str) -> None:
        """The pipeline's process was stopped or died: it no longer counts on its node."""
        self._nodes.pop(pipeline_id, None)

    def node_of(self, pipeline_id: str) -> str | None:
        return self._nodes.get(pipeline_id)

    def load(self) -> Counter[str]:
        """How many pipelines run (or start) on each node."""
        return Counter(self._nodes.values())

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

    def choose_host(self, pipeline_id: str, candidates: Iterable[str],
                    hosts: Iterable[HostRoom]) -> tuple[str | None, str | None]:
        """Where a shared pipeline goes: `(host, node)`, the host with room (the first of
        `hosts`, in their order) on the node `choose` picks, or `(None, node)`: a new host
        actor on that node. Without candidate nodes (none labelled), the first host with
        room, else `(None, None)`."""
        rooms = [host for host in hosts if host.free > 0]
        node = self.choose(pipeline_id, candidates)
        if node is None:
            return (rooms[0].name if rooms else None), None
        return next((host.name for host in rooms if host.node == node), None), node
