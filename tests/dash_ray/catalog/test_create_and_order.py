"""Creating a pipeline is atomic against every other writer (a second creator gets None and
the first one's secret stays valid), and a spec comes back with its keys in the order it was
written: the order of `mapping.fields` is part of the spec. Both backends."""

from __future__ import annotations

import threading
from typing import Any

from dash_ray.catalog import Catalog
from dash_ray.mapping import compile_mapping
from dash_ray.spec import parse_spec
from tests.dash_ray.catalog.conftest import Place

# Each expression uses a field declared before it that sorts after it.
ORDERED: dict[str, Any] = {
    "id": "ordered",
    "source": {"kind": "push"},
    "mapping": {"fields": {
        "temp_c": {"path": "$.t", "type": "double"},
        "feels_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
        "zeta": {"path": "$.z", "type": "int"},
        "alpha": {"expr": "zeta * 2", "type": "int"},
    }},
}


def test_a_spec_comes_back_in_the_order_it_was_written(catalog: Catalog, place: Place) -> None:
    written = parse_spec(ORDERED)
    catalog.put_pipeline(written, secret="whsec_a")
    order = ["temp_c", "feels_f", "zeta", "alpha"]
    for record in (catalog.get_pipeline("ordered"), catalog.list_pipelines()[0]):
        assert record is not None
        assert list(record.spec.mapping.fields) == order
        compile_mapping(record.spec.mapping)  # an expression above its field would raise
    updated = parse_spec({**ORDERED, "description": "v2"})
    catalog.put_pipeline(updated, secret=None)
    catalog.close()
    again = place.open()
    try:
        record = again.get_pipeline("ordered")
        assert record is not None and list(record.spec.mapping.fields) == order
        assert record.spec.to_json_dict() == updated.to_json_dict()
        assert list(record.spec.to_json_dict()) == list(updated.to_json_dict())
    finally:
        again.close()


def test_create_refuses_a_second_creator_and_keeps_the_first_secret(catalog: Catalog) -> None:
    spec = parse_spec(ORDERED)
    first = catalog.create_pipeline(spec, secret="whsec_first")
    assert first is not None and first.version == 1 and [s.secret for s in first.secrets] == ["whsec_first"]
    assert catalog.create_pipeline(parse_spec({**ORDERED, "description": "other"}), secret="whsec_2") is None
    record = catalog.get_pipeline("ordered")
    assert record == first


def test_racing_creators_in_two_processes_make_one_pipeline(place: Place) -> None:
    # Two catalogs on one database stand for two registries (or processes) creating at once.
    catalogs = [place.open() for _ in range(2)]
    try:
        for round_no in range(10):
            spec = parse_spec({**ORDERED, "id": f"race-{round_no}"})
            barrier = threading.Barrier(4)
            results: list[tuple[str, Any]] = []

            def create(cat: Catalog, secret: str) -> None:
                barrier.wait()
                results.append((secret, cat.create_pipeline(spec, secret=secret)))

            threads = [threading.Thread(target=create, args=(catalogs[i % 2], f"whsec_{i}")) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [(secret, r) for secret, r in results if r is not None]
            assert len(results) == 4 and len(winners) == 1, results
            [(secret, _)] = winners
            stored = catalogs[0].get_pipeline(spec.id)
            assert stored is not None and [s.secret for s in stored.secrets] == [secret]
    finally:
        for cat in catalogs:
            cat.close()
