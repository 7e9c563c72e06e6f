"""Named secrets in the catalog, against every backend: put creates then replaces, values come
back only through `values` (decrypted), never in a listing or in the stored bytes, and a
missing name is named."""

from __future__ import annotations

import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import Catalog
from dash_ray.errors import NotFoundError, SecretKeyError
from tests.dash_ray.catalog.conftest import FakeClock, Place


def test_put_creates_then_replaces(catalog: Catalog, clock: FakeClock) -> None:
    assert catalog.secrets.put("slack-url", "https://hooks.example/one") is True
    clock.advance(7)
    assert catalog.secrets.put("slack-url", "https://hooks.example/two") is False
    [info] = catalog.secrets.list()
    assert info.name == "slack-url"
    assert (info.updated_at - info.created_at).total_seconds() == 7
    assert catalog.secrets.values(["slack-url"]) == {"slack-url": "https://hooks.example/two"}


def test_values_name_every_missing_secret(catalog: Catalog) -> None:
    catalog.secrets.put("a", "1")
    assert catalog.secrets.values([]) == {}
    assert catalog.secrets.values(["a", "a"]) == {"a": "1"}
    with pytest.raises(NotFoundError) as caught:
        catalog.secrets.values(["a", "b", "c"])
    assert "'b', 'c'" in caught.value.message and caught.value.where == "b"


def test_delete(catalog: Catalog) -> None:
    catalog.secrets.put("a", "1")
    assert catalog.secrets.delete("a") is True
    assert catalog.secrets.delete("a") is False
    assert catalog.secrets.list() == []


def test_values_are_encrypted_at_rest_and_listing_shows_none(place: Place, catalog: Catalog) -> None:
    catalog.secrets.put("smtp-password", "correct-horse-battery-staple")
    stored = repr(place.raw_rows("named_secrets")).encode()
    if place.backend == "sqlite":
        from pathlib import Path

        for path in Path(place.url).parent.glob(Path(place.url).name + "*"):
            stored += path.read_bytes()
    assert b"correct-horse" not in stored
    assert "correct-horse" not in repr(catalog.secrets.list())


def test_a_value_opens_only_with_its_key(place: Place, catalog: Catalog) -> None:
    catalog.secrets.put("k", "v")
    catalog.close()
    other = place.open(box=SecretBox([SecretBox.generate_key()]))
    try:
        with pytest.raises(SecretKeyError):
            other.secrets.values(["k"])
    finally:
        other.close()


def test_a_value_too_large_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="at most"):
        catalog.secrets.put("big", "x" * (64 * 1024 + 1))
