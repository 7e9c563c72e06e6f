"""`dash_ray.connect()` with no URL finds the platform as the CLI does (issue 22 item 12: it
always used :8000): `$DASH_URL`, else the run file `dash-ray up` wrote in `$DASH_HOME`, and the
token from `$DASH_TOKEN`, `$DASH_ADMIN_TOKEN` or `$DASH_HOME/admin.token`. No platform needed:
only where the client would talk to is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

import dash_ray
from dash_ray.deploy.localray import record_platform
from dash_ray.errors import UnavailableError


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("DASH_URL", "DASH_TOKEN", "DASH_ADMIN_TOKEN", "DASH_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _token(client: dash_ray.Client) -> str | None:
    header = client._http.headers.get("authorization")
    return header.removeprefix("Bearer ") if header else None


def test_connect_uses_the_run_file_and_token_file_of_dash_home(clean_env: Path) -> None:
    home = clean_env / ".dash"
    home.mkdir()
    record_platform(home, url="http://127.0.0.1:18123", ray_address="127.0.0.1:6379")
    (home / "admin.token").write_text("dash_admin_from-the-file\n")
    with dash_ray.connect() as client:
        assert client.url == "http://127.0.0.1:18123" and _token(client) == "dash_admin_from-the-file"


def test_dash_url_and_dash_token_come_first_and_explicit_arguments_before_them(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = clean_env / "elsewhere"
    elsewhere.mkdir()
    record_platform(elsewhere, url="http://127.0.0.1:18124", ray_address="127.0.0.1:6379")
    monkeypatch.setenv("DASH_HOME", str(elsewhere))
    monkeypatch.setenv("DASH_ADMIN_TOKEN", "dash_admin_from-env")
    with dash_ray.connect() as client:
        assert client.url == "http://127.0.0.1:18124" and _token(client) == "dash_admin_from-env"
    monkeypatch.setenv("DASH_URL", "http://127.0.0.1:18125")
    monkeypatch.setenv("DASH_TOKEN", "dash_read_token")
    with dash_ray.connect() as client:
        assert client.url == "http://127.0.0.1:18125" and _token(client) == "dash_read_token"
    with dash_ray.connect("http://127.0.0.1:18126", token="given") as client:
        assert client.url == "http://127.0.0.1:18126" and _token(client) == "given"


def test_no_running_platform_is_said_plainly(clean_env: Path) -> None:
    with pytest.raises(UnavailableError, match=r"Dash is not running for DASH_HOME=.*\.dash \(no run.json there\)"):
        dash_ray.connect()
    assert not (clean_env / ".dash").exists()  # nothing created
    with dash_ray.connect("http://127.0.0.1:18127") as client:  # a URL given: no token needed
        assert _token(client) is None
