"""`cluster.yaml` and `configs/cluster-onprem.yaml` pass Ray 2.60's own cluster-config checks,
offline: `prepare_config` (defaults filled in, the local provider's single node type) and
`validate_config` (the launcher's JSON schema), as `ray up` runs them before it starts a node;
and each node's role label is where the launcher will apply it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from dash_ray.settings import ROLE_LABEL

ROOT = Path(__file__).resolve().parents[1]


def _prepared(name: str) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / name).read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_valid_with_a_head_web_and_ingestor_node_types() -> None:
    config = _prepared("cluster.yaml")
    types = config["available_node_types"]
    assert config["head_node_type"] == "head"
    assert {name: t["labels"][ROLE_LABEL] for name, t in types.items()} == {
        "head": "web", "web": "web", "ingestor": "ingestor"}
    for name in ("web", "ingestor"):
        assert 1 <= types[name]["min_workers"] <= types[name]["max_workers"]
        assert types[name]["resources"]["CPU"] >= 2
    assert sum(t["min_workers"] for t in types.values()) <= config["max_workers"]


@pytest.mark.parametrize("name", ["cluster.yaml", "configs/cluster-onprem.yaml"])
def test_setup_installs_this_project_and_the_head_starts_the_platform(name: str) -> None:
    config = _prepared(name)
    setup = " ".join(config["setup_commands"])
    assert "ray[serve]==2.60.0" in setup and "dash_ray-" in setup and "[cluster]" in setup
    assert config["file_mounts"]["~/dash-dist"] == "./dist"  # the wheel `pip wheel -w dist .` builds
    head = config["head_start_ray_commands"]
    assert any(c.strip().startswith("ray stop") for c in head)
    up = next(c for c in head if "dash-ray up" in c)
    assert "DASH_RAY_ADDRESS=127.0.0.1:6379" in up and "DASH_LOG=jetstream" in up and "DASH_STATE_DIR=" in up


def test_onprem_config_puts_the_labels_on_the_ray_start_lines() -> None:
    config = _prepared("configs/cluster-onprem.yaml")
    # The local provider runs one node type; Ray does not pass labels to its nodes.
    assert config["provider"]["type"] == "local"
    assert list(config["available_node_types"]) == ["local.cluster.node"]
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    worker = next(c for c in config["worker_start_ray_commands"] if "ray start" in c)
    assert f"--labels={ROLE_LABEL}=web" in head
    assert re.search(rf"--labels={re.escape(ROLE_LABEL)}=\$\(cat /etc/dash-role .*\|\| echo ingestor\)", worker)
    assert config["available_node_types"]["local.cluster.node"]["max_workers"] == len(config["provider"]["worker_ips"])


def test_a_broken_config_is_refused_by_the_same_checks() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["web"]["labels"] = {ROLE_LABEL: 1}  # labels are strings
    with pytest.raises(Exception, match="is not of type 'string'"):
        validate_config(prepare_config(config))
