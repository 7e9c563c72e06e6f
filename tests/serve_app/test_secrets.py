"""Named secrets over HTTP, the SDK and the CLI: put (create, replace), listed by name only and
never returned, admin only, a spec referring to a missing one refused with its field path, and
a secret in use not deletable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from dash_ray.errors import ConflictError, ForbiddenError, NotFoundError, SpecError
from dash_ray.registry.secrets import Secrets
from dash_ray.spec import SecretRef, parse_spec, secret_refs
from tests.conftest import _dash_env

pytestmark = pytest.mark.ray


def test_put_list_delete_over_http(platform) -> None:
    with platform.http() as http:
        made = http.put("/v1/secrets/http-one", json={"value": "v-one-SECRET"})
        assert (made.status_code, made.json()) == (201, {"name": "http-one", "created": True})
        again = http.put("/v1/secrets/http-one", json={"value": "v-two-SECRET"})
        assert (again.status_code, again.json()["created"]) == (200, False)
        listing = http.get("/v1/secrets")
        assert listing.status_code == 200 and "SECRET" not in listing.text
        [entry] = [s for s in listing.json()["secrets"] if s["name"] == "http-one"]
        assert set(entry) == {"name", "created_at", "updated_at"} and entry["created_at"].endswith("Z")
        for bad, where in (({"value": ""}, "value"), ({"value": 3}, "value"), ({}, "value")):
            refused = http.put("/v1/secrets/http-two", json=bad)
            assert refused.status_code == 422 and refused.json()["error"]["where"] == where, refused.text
        assert http.put("/v1/secrets/-bad", json={"value": "x"}).status_code == 422
        assert http.get("/v1/secrets/http-one").status_code == 405  # never read back
        assert http.delete("/v1/secrets/http-one").status_code == 204
        assert http.delete("/v1/secrets/http-one").status_code == 404


def test_only_admin_tokens_see_or_change_secrets(platform) -> None:
    reader = platform.client.create_token("read", name="secrets-reader")["token"]
    with platform.http(reader) as http:
        assert http.get("/v1/secrets").status_code == 403
        assert http.put("/v1/secrets/nope", json={"value": "x"}).status_code == 403
    from dash_ray.client import Client

    with Client(platform.url, token=reader) as client, pytest.raises(ForbiddenError):
        client.secrets()


def test_sdk_put_list_delete(platform) -> None:
    client = platform.client
    assert client.put_secret("sdk-one", "value-1") is True
    assert client.put_secret("sdk-one", "value-2") is False
    assert "sdk-one" in [s["name"] for s in client.secrets()]
    client.delete_secret("sdk-one")
    with pytest.raises(NotFoundError):
        client.delete_secret("sdk-one")


def test_cli_set_ls_rm_reads_the_value_from_stdin(platform, tmp_path: Path) -> None:
    env = _dash_env(tmp_path / ".dash", platform.settings.port,
                    {"DASH_URL": platform.url, "DASH_TOKEN": platform.token})
    cli = [str(Path(sys.executable).with_name("dash-ray")), "secrets"]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60)

    made = run("set", "cli-one", stdin="from-stdin-SECRET\n")
    assert made.returncode == 0 and made.stdout.strip() == "secret cli-one created", made.stderr
    (tmp_path / "value").write_text("from-file-SECRET\n")
    replaced = run("set", "cli-one", "--from-file", str(tmp_path / "value"))
    assert replaced.returncode == 0 and "replaced" in replaced.stdout
    listing = run("ls")
    assert "cli-one" in listing.stdout and "SECRET" not in listing.stdout + listing.stderr
    assert '"name": "cli-one"' in run("ls", "--json").stdout
    assert run("rm", "cli-one").returncode == 0
    gone = run("rm", "cli-one")
    assert gone.returncode != 0 and "no secret 'cli-one'" in gone.stderr


class _Auth(BaseModel):
    token: SecretRef


class _UsesSecrets(BaseModel):
    """Stands for a spec whose source and sink blocks refer to secrets."""

    auth: _Auth
    sinks: list[SecretRef]


async def test_values_go_only_to_the_pipeline_that_refers_to_them_and_a_used_one_stays(tmp_path: Path) -> None:
    """The registry's part over a real catalog (no Ray): a pipeline gets the values its spec
    refers to and nothing else; a secret in use cannot be deleted (409 naming the pipeline)."""
    from dash_ray.auth.secretbox import SecretBox
    from dash_ray.catalog import open_catalog

    catalog = open_catalog(tmp_path / "catalog.sqlite", box=SecretBox([SecretBox.generate_key()]))
    try:
        uses = _UsesSecrets(auth=_Auth(token=SecretRef(secret="api-key")), sinks=[SecretRef(secret="hook")])
        assert secret_refs(uses) == [("auth.token", "api-key"), ("sinks.0", "hook")]
        specs = {"plain": parse_spec({"id": "plain"}), "poller": uses}
        secrets = Secrets(lambda: catalog, lambda: specs)  # type: ignore[arg-type, return-value]
        assert await secrets.put("api-key", "k1") is True
        assert await secrets.put("unused", "u") is True
        assert await secrets.missing(uses) == ["hook"]  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match="'hook'"):
            await secrets.for_pipeline("poller")
        await secrets.put("hook", "https://hooks.example/x")
        assert await secrets.for_pipeline("poller") == {"api-key": "k1", "hook": "https://hooks.example/x"}
        assert await secrets.for_pipeline("plain") == {}
        with pytest.raises(NotFoundError):
            await secrets.for_pipeline("other")
        with pytest.raises(SpecError):
            await secrets.put("bad name", "x")
        with pytest.raises(ConflictError, match="used by pipeline poller") as caught:
            await secrets.delete("api-key")
        assert caught.value.status == 409
        await secrets.delete("unused")
        with pytest.raises(NotFoundError):
            await secrets.delete("unused")
    finally:
        catalog.close()
