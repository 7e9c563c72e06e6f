"""Dash on a real multi-node Ray cluster on this machine, one per test module: a head and a
second web node, two ingestor nodes (`nodes.py`), the platform joined to it with `dash-ray up
--address` (`joined.py`). Every node, actor and process ends with the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.joined import OnCluster, start_platform
from tests.cluster.nodes import Nodes


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnCluster]:
    nodes = Nodes(head_role="web")
    try:
        nodes.add("web2", "web")
        nodes.add("ing1", "ingestor")
        nodes.add("ing2", "ingestor")
        on = start_platform(nodes, tmp_path_factory.mktemp("cluster"), web_replicas=2)
    except BaseException:
        nodes.close()
        raise
    try:
        yield on
    finally:
        on.stop()
