import datetime as dt

import pytest

from dash_ray.mapping.timestamps import check_format, check_timezone, parse_iso_scalar, parse_timestamps

UTC = dt.timezone.utc


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def one(value, **options):
    array, failed = parse_timestamps([value], **options)
    return None if failed[0] else array[0].as_py()


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00Z", at(2024, 5, 1, 12)),
    ("2024-05-01t12:00:00z", at(2024, 5, 1, 12)),
    ("2024-05-01 12:00:00Z", at(2024, 5, 1, 12)),
    ("2024-05-01T12:00:00.5Z", at(2024, 5, 1, 12, 0, 0, 500000)),
    ("2024-05-01T12:00:00,25Z", at(2024, 5, 1, 12, 0, 0, 250000)),
    ("2024-05-01T12:00:00.123456789Z", at(2024, 5, 1, 12, 0, 0, 123456)),
    ("2024-05-01T12:00:00+02:00", at(2024, 5, 1, 10)),
    ("2024-05-01T12:00:00-0530", at(2024, 5, 1, 17, 30)),
    ("2024-05-01T12:00+02", at(2024, 5, 1, 10)),
    ("2024-05-01T12Z", at(2024, 5, 1, 12)),
    ("2024-05-01T12:00:00", at(2024, 5, 1, 12)),  # no offset: UTC
    ("2024-05-01 12:00", at(2024, 5, 1, 12)),
    ("2024-05-01", at(2024, 5, 1)),
    ("0001-01-01T00:00:00Z", at(1, 1, 1)),
    ("9999-12-31T23:59:59.999999Z", at(9999, 12, 31, 23, 59, 59, 999999)),
    ("2024-02-30T00:00:00Z", None), ("2024-05-01T24:00:00Z", None), ("2024-05-01T12:00:60Z", None),
    ("2024-05-01T12:00:00+25:00", None), ("0001-01-01T00:00:00+01:00", None),
    ("9999-12-31T23:00:00-02:00", None), ("yesterday", None), ("", None), (" 2024-05-01", None),
    ("2024-05-01T12:00:00Z ", None), ("20240501T120000Z", None), ("2024-5-1", None), ("2024-05-01Z", None),
])
def test_iso(text, expected):
    assert one(text) == expected


def test_no_offset_means_the_field_timezone():
    assert one("2024-07-01T12:00:00", timezone="Europe/Paris") == at(2024, 7, 1, 10)
    assert one("2024-01-01T12:00:00", timezone="Europe/Paris") == at(2024, 1, 1, 11)
    assert one("2024-07-01T12:00:00Z", timezone="Europe/Paris") == at(2024, 7, 1, 12)
    assert one("2024-07-01", timezone="America/New_York") == at(2024, 7, 1, 4)
    # DST: an ambiguous local time is the earlier instant; a skipped one is when clocks changed.
    assert one("2024-10-27T02:30:00", timezone="Europe/Paris") == at(2024, 10, 27, 0, 30)
    assert one("2024-03-31T02:30:00", timezone="Europe/Paris") == at(2024, 3, 31, 1)


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (1_700_000_000, None, at(2023, 11, 14, 22, 13, 20)),
    (1_700_000_000.25, None, at(2023, 11, 14, 22, 13, 20, 250000)),
    (1_700_000_000, "s", at(2023, 11, 14, 22, 13, 20)),
    (1_700_000_000_123, "ms", at(2023, 11, 14, 22, 13, 20, 123000)),
    (1_700_000_000_123_456, "us", at(2023, 11, 14, 22, 13, 20, 123456)),
    (1_700_000_000_123_456_789, "ns", at(2023, 11, 14, 22, 13, 20, 123456)),
    (-1, "s", at(1969, 12, 31, 23, 59, 59)),
    (0, "ms", at(1970, 1, 1)),
    (10**20, "s", None), (1e300, "ms", None), (-(10**15), "s", None),
    (True, "s", None), ([1], None, None), ({"a": 1}, None, None),
])
def test_epoch_numbers(value, unit, expected):
    assert one(value, unit=unit) == expected


def test_format():
    assert one("01/05/2024 13:45", fmt="%d/%m/%Y %H:%M") == at(2024, 5, 1, 13, 45)
    assert one("01/05/2024 13:45", fmt="%d/%m/%Y %H:%M", timezone="Europe/Paris") == at(2024, 5, 1, 11, 45)
    assert one("2024-05-01 13:45:00.5 +0200", fmt="%Y-%m-%d %H:%M:%S.%f %z") == at(2024, 5, 1, 11, 45, 0, 500000)
    assert one("May 1 2024", fmt="%b %d %Y") == at(2024, 5, 1)
    assert one("2024-05-01", fmt="%d/%m/%Y") is None
    assert one(1_700_000_000, fmt="%d/%m/%Y") == at(2023, 11, 14, 22, 13, 20)  # numbers stay epoch


def test_a_batch_of_mixed_values_is_the_same_as_one_by_one():
    values = ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00", "bad", None, 1_700_000_000, "2024-02-30",
              "2024-05-01T12:00:00.1234567+01:00", True, "2024-05-01", 2.5]
    array, failed = parse_timestamps(values, timezone="Asia/Tokyo")
    assert array.to_pylist() == [one(v, timezone="Asia/Tokyo") for v in values]
    assert failed.tolist() == [False, False, True, False, False, True, False, True, False, False]


def test_parse_iso_scalar():
    assert parse_iso_scalar("1970-01-01T00:00:01Z") == 1_000_000
    assert parse_iso_scalar("nope") is None


@pytest.mark.parametrize(("name", "ok"), [
    ("UTC", True), ("Europe/Paris", True), ("America/Argentina/Buenos_Aires", True), ("Etc/GMT+5", True),
    ("Mars/Olympus", False), ("../../etc/passwd", False), ("/etc/passwd", False), ("Europe/../../etc/passwd", False),
    ("+02:00", False), ("", False), ("Europe/Paris'; DROP TABLE x; --", False),
])
def test_timezones(name, ok):
    assert (check_timezone(name) is None) == ok


@pytest.mark.parametrize(("fmt", "ok"), [
    ("%Y-%m-%d %H:%M:%S.%f%z", True), ("%d %b %Y %I:%M %p", True), ("%j/%y", True), ("100%%", True),
    ("%c", False), ("%U", False), ("%Q", False), ("%Y %", False), ("%s", False),
])
def test_formats(fmt, ok):
    assert (check_format(fmt) is None) == ok
