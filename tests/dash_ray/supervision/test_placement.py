"""The placement policy without Ray: least-loaded ingestor node, away from the node a
pipeline's last process ran on, and what stops counting when a process goes."""

from __future__ import annotations

from dash_ray.supervision.placement import Placement


def test_pipelines_go_to_the_least_loaded_node_and_spread_evenly() -> None:
    placement = Placement()
    chosen = []
    for i in range(6):
        node = placement.choose(f"p{i}", ["b", "a", "c"])
        assert node is not None
        placement.placed(f"p{i}", node)
        chosen.append(node)
    assert chosen == ["a", "b", "c", "a", "b", "c"]
    assert placement.node_of("p4") == "b"


def test_a_restart_avoids_the_node_its_last_process_ran_on_unless_it_is_the_only_one() -> None:
    placement = Placement()
    placement.placed("p", "a")
    placement.placed("q", "b")
    placement.gone("p")  # crashed on a
    assert placement.choose("p", ["a", "b"]) == "b"  # b is busier, but a may be the lost node
    assert placement.choose("p", ["a"]) == "a"
    assert placement.choose("p", []) is None
    assert placement.node_of("p") is None


def test_a_pipeline_does_not_count_against_itself() -> None:
    placement = Placement()
    placement.placed("p", "a")
    placement.placed("q", "b")
    placement.placed("r", "b")
    assert placement.choose("p", ["a", "b", "c"]) in ("c",)  # a is its last node; c is empty
    placement.placed("s", "c")
    assert placement.choose("x", ["a", "b", "c"]) == "a"
