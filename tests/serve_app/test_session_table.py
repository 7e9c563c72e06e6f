"""Page sessions on a web replica, driven without Ray (the stand-in registry of
`test_gateway.py`, given sessions): a session reads with its token's scope; made-up cookies
cost at most one registry call a second; the sessions used are reported on the next ask (their
idle deadline moves on); sign-out and a revoked token end a session at once on the replica that
did it; an expired grant is refused before the registry says so."""

from __future__ import annotations

import pytest

from dash_ray.auth.sessions import Credential, SessionGrant, hash_session, new_session_id
from dash_ray.auth.tokens import hash_token, token_id_of
from dash_ray.errors import AuthError, ForbiddenError
from dash_ray.settings import Settings
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient
from tests.serve_app.test_gateway import ADMIN, Clock, FakeRegistry

READER = "dash_0123456789ab_reader"


class SessionRegistry(FakeRegistry):
    """The stand-in registry, keeping sessions as the real one does (by the hash of the id)."""

    def __init__(self, wall: Clock) -> None:
        super().__init__()
        self.wall = wall
        self.kept: dict[str, tuple[str, SessionGrant]] = {}  # hash -> (token id, grant)
        self.reported: list[list[str]] = []

    def do_open_session(self, token_id: str, token_hash: str) -> tuple[str, SessionGrant]:
        session_id = new_session_id()
        grant = SessionGrant(token_hash, self.wall.now + 3600, self.wall.now + 7200)
        self.kept[hash_session(session_id)] = (token_id, grant)
        return session_id, grant

    def do_sessions(self, seen: list[str]) -> dict[str, SessionGrant]:
        self.reported.append(seen)
        return {digest: grant for digest, (_, grant) in self.kept.items()}

    def do_close_session(self, session_hash: str) -> None:
        self.kept.pop(session_hash, None)

    def do_revoke_token(self, token_id: str) -> None:
        self.tokens = {t: s for t, s in self.tokens.items() if token_id_of(t) != token_id}
        self.kept = {h: v for h, v in self.kept.items() if v[0] != token_id}


@pytest.fixture()
def replica(tmp_path) -> tuple[Gateway, SessionRegistry, Clock, Clock]:
    clock, wall = Clock(), Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path), admin_token_hash=hash_token(ADMIN))
    registry = SessionRegistry(wall)
    gateway = Gateway(settings.web(), token_ttl_s=10, clock=clock,
                      registry=RegistryClient(settings.namespace, handle=registry))
    gateway.sessions._wall = wall  # the grants' deadlines are wall-clock times
    return gateway, registry, clock, wall


def _calls(registry: FakeRegistry, name: str) -> int:
    return sum(1 for n, _ in registry.calls if n == name)


async def test_a_session_reads_with_its_tokens_scope(replica) -> None:
    gateway, registry, _, _ = replica
    reader = Credential("session", await gateway.open_session(READER))
    admin = Credential("session", await gateway.open_session(ADMIN))
    assert await gateway.check(reader, "read") == "read"
    with pytest.raises(ForbiddenError):
        await gateway.check(reader, "admin")
    assert await gateway.check(admin, "admin") == "admin"
    assert [args[0] for name, args in registry.calls if name == "open_session"] == ["0123456789ab", "admin"]
    with pytest.raises(AuthError):
        await gateway.open_session("dash_0123456789ff_made-up")
    with pytest.raises(AuthError):
        await gateway.check(None, "read")


async def test_made_up_cookies_cost_at_most_one_call_a_second(replica) -> None:
    gateway, registry, clock, _ = replica
    await gateway.check(Credential("session", await gateway.open_session(READER)), "read")
    before = _calls(registry, "sessions")
    for n in range(200):
        with pytest.raises(AuthError, match="sign in again"):
            await gateway.check(Credential("session", f"dss_made-up-{n}"), "read")
    assert _calls(registry, "sessions") - before <= 1
    clock.now += 1.5
    with pytest.raises(AuthError):
        await gateway.check(Credential("session", "dss_made-up-again"), "read")
    assert _calls(registry, "sessions") - before <= 2


async def test_the_sessions_used_are_reported_on_the_next_ask(replica) -> None:
    gateway, registry, clock, _ = replica
    used = await gateway.open_session(READER)
    unused = await gateway.open_session(READER)
    await gateway.check(Credential("session", used), "read")
    clock.now += 11  # past the table's 10 s
    await gateway.check(Credential("session", used), "read")
    assert hash_session(used) in registry.reported[-1] and hash_session(unused) not in registry.reported[-1]
    assert all("dss_" not in digest for seen in registry.reported for digest in seen)  # hashes only


async def test_sign_out_and_revocation_end_a_session_at_once_here(replica) -> None:
    gateway, registry, _, _ = replica
    signed_out = Credential("session", await gateway.open_session(READER))
    await gateway.check(signed_out, "read")
    await gateway.close_session(signed_out.secret)
    with pytest.raises(AuthError):
        await gateway.check(signed_out, "read")
    revoked = Credential("session", await gateway.open_session(READER))
    await gateway.check(revoked, "read")
    await gateway.registry.revoke_token("0123456789ab")
    gateway.forget_tokens()  # what `DELETE /v1/tokens/{id}` does on the replica that took it
    with pytest.raises(AuthError):
        await gateway.check(revoked, "read")


async def test_a_revoked_token_ends_its_sessions_on_other_replicas_with_the_token_ttl(replica) -> None:
    gateway, registry, clock, _ = replica
    session = Credential("session", await gateway.open_session(READER))
    await gateway.check(session, "read")
    del registry.tokens[READER]  # revoked through another replica; its sessions row not yet gone
    clock.now += 11
    with pytest.raises(AuthError):
        await gateway.check(session, "read")


async def test_an_expired_grant_is_refused_before_the_registry_forgets_it(replica) -> None:
    gateway, _, _, wall = replica
    session = Credential("session", await gateway.open_session(READER))
    assert await gateway.check(session, "read") == "read"
    wall.now += 3600  # idle past its deadline; the table is still fresh
    with pytest.raises(AuthError):
        await gateway.check(session, "read")
