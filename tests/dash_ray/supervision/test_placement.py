"""The placement policy without Ray: least-loaded ingestor node, away from the node a
pipeline's last process ran on, and what stops counting when a process goes."""

from __future__ import annotations

from dash_ray.supervision.placement import HostRoom, Placement


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


def test_shared_pipelines_join_hosts_on_the_least_loaded_node_and_new_hosts_go_there() -> None:
    placement = Placement()
    hosts: dict[str, HostRoom] = {}  # as SharedHosts keeps them: name -> node, room left
    made = 0
    for i in range(100):
        host, node = placement.choose_host(f"s{i}", ["b", "a"], hosts.values())
        assert node is not None
        if host is None:
            made += 1
            host = f"host:{made}"
            hosts[host] = HostRoom(host, node, 30)
        hosts[host] = HostRoom(host, node, hosts[host].free - 1)
        placement.reserve(f"s{i}", node)
    per_node = placement.load()
    assert per_node == {"a": 50, "b": 50}
    # 50 on a node at 30 a host: two hosts each, every host on one node
    assert sorted((h.node, 30 - h.free) for h in hosts.values()) == [("a", 20), ("a", 30), ("b", 20), ("b", 30)]


def test_dedicated_and_shared_pipelines_count_alike_and_starting_ones_count_already() -> None:
    placement = Placement()
    for i in range(3):
        placement.placed(f"d{i}", "a")  # three dedicated on a
    rooms = [HostRoom("host:1", "a", 10)]
    assert placement.choose_host("s", ["a", "b"], rooms) == (None, "b")  # a is busier: a new host on b
    placement.reserve("s", "b")
    rooms.append(HostRoom("host:2", "b", 9))
    assert placement.choose_host("t", ["a", "b"], rooms) == ("host:2", "b")
    placement.reserve("t", "b")
    placement.reserve("u", "b")
    assert placement.choose_host("v", ["a", "b"], rooms) == ("host:1", "a")  # 3 and 3: the first by id
    placement.gone("u")  # its start failed
    assert placement.load() == {"a": 3, "b": 2}


def test_a_full_host_is_passed_over_and_no_labelled_node_keeps_the_first_host_with_room() -> None:
    placement = Placement()
    rooms = [HostRoom("host:1", "a", 0), HostRoom("host:2", "b", 5), HostRoom("host:3", "a", 1)]
    assert placement.choose_host("p", ["a", "b"], rooms) == ("host:3", "a")
    assert placement.choose_host("p", [], rooms) == ("host:2", None)
    assert placement.choose_host("p", [], [HostRoom("host:1", None, 0)]) == (None, None)
    # a host on a node no longer listed (lost) takes nobody: a new host on a live node
    assert placement.choose_host("p", ["c"], rooms) == (None, "c")
