"""The rule for a spec's `storage.lake`: durable, under an allowed root, apart from every
other lake's data."""

from __future__ import annotations

import pytest

from dash_ray.errors import SpecError
from dash_ray.lake_roots import LakeRoots

RULE = LakeRoots("/srv/dash/lake", ("/data/lakes", "s3://bucket/dash"))


def refused(lake: str, *, others: tuple[str, ...] = (), rule: LakeRoots = RULE) -> str:
    with pytest.raises(SpecError) as caught:
        rule.check(lake, others=others)
    assert caught.value.where == "storage.lake"
    [problem] = caught.value.problems
    return problem.message


@pytest.mark.parametrize("lake", [
    "/srv/dash/lake", "file:///srv/dash/lake", "/srv/dash/lake/", "/srv/dash/lake/custom",
    "/data/lakes", "/data/lakes/a", "/data/lakes/./a/", "s3://bucket/dash", "s3://bucket/dash/team/x",
])
def test_allowed_places(lake: str) -> None:
    RULE.check(lake)


def test_no_custom_lake_is_always_fine() -> None:
    RULE.check(None, others=["/data/lakes/a"])


@pytest.mark.parametrize("lake", ["memory://x", "memory://srv/dash/lake"])
def test_memory_is_not_durable(lake: str) -> None:
    assert "not durable" in refused(lake)


@pytest.mark.parametrize("lake", [
    "/tmp/x", "/data", "/data/lakes-other", "/data/lakes/../secret", "s3://bucket/other",
    "s3://bucket2/dash", "/srv/dash", "file:///etc",
])
def test_outside_every_root_is_refused_naming_the_roots(lake: str) -> None:
    message = refused(lake)
    assert "not under a lake root" in message and "/data/lakes" in message and "DASH_LAKE_ROOTS" in message


@pytest.mark.parametrize("lake", [
    "/srv/dash/lake/bronze", "/srv/dash/lake/silver/other-pipeline", "/srv/dash/lake/dead/x/y",
])
def test_inside_the_platform_lakes_areas_is_refused(lake: str) -> None:
    assert "area of the lake /srv/dash/lake" in refused(lake)


def test_a_lake_holding_another_lake_in_its_areas_is_refused() -> None:
    rule = LakeRoots("/data/lakes/x/bronze/p", ("/data/lakes",))
    assert "would hold the lake /data/lakes/x/bronze/p in its bronze area" in refused("/data/lakes/x", rule=rule)


def test_other_pipelines_custom_lakes_may_be_shared_not_overlapped() -> None:
    others = ("/data/lakes/team", "s3://bucket/dash/t1")
    RULE.check("/data/lakes/team/", others=others)  # the same lake: each pipeline has its folders
    RULE.check("s3://bucket/dash/t2", others=others)
    assert "overlaps the lake /data/lakes/team" in refused("/data/lakes/team/inner", others=others)
    assert "overlaps the lake /data/lakes/team" in refused("/data/lakes", others=others)
    assert "overlaps the lake s3://bucket/dash/t1" in refused("s3://bucket/dash", others=others)
    assert "area of the lake /data/lakes/team" in refused("/data/lakes/team/silver", others=others)


def test_malformed_places_are_refused() -> None:
    assert "names no bucket" in refused("s3://")
    assert "neither an absolute folder nor a URL" in refused("relative/path")


def test_settings_read_the_roots_and_refuse_relative_ones() -> None:
    from dash_ray.settings import Settings

    settings = Settings.from_env({"DASH_HOME": "/tmp/h", "DASH_LAKE_ROOTS": "/data/a, s3://b/p,,"})
    assert settings.lake_roots == ("/data/a", "s3://b/p")
    with pytest.raises(ValueError, match="DASH_LAKE_ROOTS"):
        Settings.from_env({"DASH_HOME": "/tmp/h", "DASH_LAKE_ROOTS": "data/a"})
