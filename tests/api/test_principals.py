"""Principals over HTTP (api/auth.py, domain/principals.py): two tenants on one server, API
keys and JWTs (HS256, RS256, EdDSA), 401s that are counted and never stored, and who did it
in the history, under the hash chain."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from httpx import AsyncClient, Response
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.infra.audit import verify
from baton.infra.settings import Settings
from baton.infra.tables import events
from tests.api.conftest import in_process_client, running

ALICE_KEY = "alice-key-0123456789abcdef0123456789"
BOB_KEY = "bob-key-0123456789abcdef0123456789abcd"
ADMIN_KEY = "admin-key-0123456789abcdef0123456789"
SECRET = "a-jwt-secret-of-at-least-32-characters" * 2  # 64+ bytes: HS512 without a warning
ISSUER, AUDIENCE = "https://issuer.example", "baton"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
UNKNOWN_ID = "0190a5b0-0000-7000-8000-000000000000"


def tenants(settings: Settings, **jwt_settings: Any) -> Settings:
    return replace(
        settings,
        api_keys=(("alice", ALICE_KEY), ("bob", BOB_KEY)),
        admin_keys=(ADMIN_KEY,),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        **jwt_settings,
    )


@pytest.fixture(scope="module")
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    app = create_app(tenants(settings, jwt_secret=SECRET))
    async with running(app), in_process_client(app) as http:
        yield http


async def start(client: AsyncClient, headers: dict[str, str], **extra: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/session", json={"message": "hello"}, headers={**headers, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def count_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def every_route(session_id: str, token: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Each turn API route, as (method, path, request options) with this token."""
    header = {"X-Continuation-Token": token}
    path = f"/v1/session/{session_id}"
    return [
        ("POST", "/v1/session", {"json": {"message": "m"}}),
        ("POST", f"{path}/message", {"json": {"message": "m", "continuationToken": token}}),
        ("GET", path, {"headers": header}),
        ("GET", f"{path}/events", {"headers": header}),
        ("GET", f"{path}/events", {"headers": {**header, "Accept": "text/event-stream"}}),
        ("POST", f"{path}/cancel?wait=0", {"headers": header}),
        ("DELETE", path, {"headers": header}),
    ]


async def call(
    client: AsyncClient, route: tuple[str, str, dict[str, Any]], auth: dict[str, str]
) -> Response:
    method, path, options = route
    headers = {**options.get("headers", {}), **auth}
    return await client.request(method, path, **{**options, "headers": headers})


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key-of-this-server-0123456789"},
        {"Authorization": f"Bearer {ALICE_KEY}x"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
async def test_an_unauthenticated_request_is_401_counted_and_never_stored(
    client: AsyncClient, engine: AsyncEngine, auth: dict[str, str]
) -> None:
    session = await start(client, ALICE)
    before = await count_events(engine)
    for route in every_route(session["sessionId"], session["continuationToken"]):
        response = await call(client, route, auth)
        assert response.status_code == 401, (route, response.text)
        assert response.json()["reason"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="baton"'
    assert await count_events(engine) == before
    metrics = (await client.get("/metrics")).text
    assert 'baton_errors_total{reason="unauthenticated"}' in metrics
    # What is not the turn API does not ask.
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/schema/openapi.json")).status_code == 200


async def test_another_tenant_cannot_read_continue_cancel_close_or_learn_of_a_session(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    """Even holding A's current token, B gets exactly what an unknown id gets."""
    session = await start(client, ALICE)
    session_id, token = session["sessionId"], session["continuationToken"]
    for route, unknown in zip(
        every_route(session_id, token)[1:], every_route(UNKNOWN_ID, token)[1:], strict=True
    ):
        theirs, nobodys = await call(client, route, BOB), await call(client, unknown, BOB)
        assert theirs.status_code == nobodys.status_code == 404, (route, theirs.text)
        assert theirs.json() == {
            "error": nobodys.json()["error"].replace(UNKNOWN_ID, session_id),
            "reason": "unknown-session",
        }
    # Nothing B did moved the session: A's token still runs the next turn.
    mine = await client.post(
        f"/v1/session/{session_id}/message",
        json={"message": "still mine", "continuationToken": token},
        headers=ALICE,
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["turn"] == 2


async def test_bad_input_from_another_tenant_is_unknown_session_not_invalid_input(
    client: AsyncClient,
) -> None:
    """An input check must not answer before the session's existence is settled."""
    session = await start(client, ALICE)
    path = f"/v1/session/{session['sessionId']}/message"
    theirs = await client.post(path, json={"message": 42}, headers=BOB)
    assert (theirs.status_code, theirs.json()["reason"]) == (404, "unknown-session")
    mine = await client.post(path, json={"message": 42}, headers=ALICE)
    assert (mine.status_code, mine.json()["reason"]) == (422, "invalid-input")


async def test_history_names_who_caused_each_event_and_verify_covers_it(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client, ALICE)
    session_id, token = session["sessionId"], session["continuationToken"]
    await client.post(
        f"/v1/session/{session_id}/message",
        json={"message": "stale"},
        headers={**ALICE, "X-Continuation-Token": "not-the-token"},
    )
    history = await client.get(f"/v1/admin/sessions/{session_id}/events", headers=ADMIN)
    assert history.status_code == 200, history.text
    stored = history.json()["events"]
    assert [(event["kind"], event["principal"]) for event in stored] == [
        ("started", "key:alice"),
        ("record", "key:alice"),
        ("committed", "key:alice"),
        ("refused", "key:alice"),
    ]
    assert all(event["data"]["principal"] == "key:alice" for event in stored)
    assert token not in history.text

    assert [broken async for broken in verify(engine, [session_id])] == []
    # The principal is in the hash-chained data: rewriting who did it breaks the chain.
    # (The database is shared with later tests that verify every chain: put it back.)
    forged = {**stored[0]["data"], "principal": "key:bob"}
    started = update(events).where(events.c.session_id == session_id, events.c.seq == 1)
    async with engine.begin() as conn:
        await conn.execute(started.values(data=forged))
    try:
        broken = [str(link) async for link in verify(engine, [session_id])]
    finally:
        async with engine.begin() as conn:
            await conn.execute(started.values(data=stored[0]["data"]))
    assert [broken async for broken in verify(engine, [session_id])] == []
    assert len(broken) == 1
    assert "seq 1" in broken[0]
    assert "hash does not match" in broken[0]


async def test_one_idempotency_key_from_two_tenants_starts_two_sessions(
    client: AsyncClient,
) -> None:
    key = {"Idempotency-Key": "a-key-two-tenants-both-chose"}
    alices = await start(client, ALICE, **key)
    bobs = await start(client, BOB, **key)
    assert alices["sessionId"] != bobs["sessionId"]
    again = await client.post("/v1/session", json={"message": "hello"}, headers={**ALICE, **key})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["sessionId"] == alices["sessionId"]


# --------------------------------------------------------------- JWTs


def minted(key: Any, algorithm: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "exp": now + 60, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_jwt_names_its_subject_and_owns_what_it_starts(client: AsyncClient) -> None:
    token = minted(SECRET, "HS256")
    session = await start(client, bearer(token))
    history = await client.get(f"/v1/admin/sessions/{session['sessionId']}/events", headers=ADMIN)
    assert {event["principal"] for event in history.json()["events"]} == {"jwt:user-42"}
    # A key whose name is the same text is another principal.
    read = await client.get(
        f"/v1/session/{session['sessionId']}",
        headers={**bearer(minted(SECRET, "HS256", sub="alice")), "X-Continuation-Token": "x"},
    )
    assert read.status_code == 404


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (minted(SECRET, "HS256", exp=int(time.time()) - 3600), "expired"),
        (minted(SECRET, "HS256", iss="https://elsewhere.example"), "issuer"),
        (minted(SECRET, "HS256", aud="another-service"), "audience"),
        (minted(SECRET, "HS256", sub=None), "sub"),
        (minted(SECRET, "HS256", exp=None), "exp"),
        (minted(SECRET, "HS256", sub=""), "subject"),
        (minted("another-secret-of-at-least-32-chars!!", "HS256"), "signature"),
        (minted(SECRET, "HS512"), "algorithm"),
        (
            jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**40}, None, "none"),
            "none",
        ),
    ],
)
async def test_a_jwt_that_does_not_hold_is_401(client: AsyncClient, token: str, why: str) -> None:
    response = await client.post("/v1/session", json={"message": "m"}, headers=bearer(token))
    assert response.status_code == 401, why
    assert response.json()["reason"] == "unauthenticated"


def hs256_signed_with(secret: bytes) -> str:
    """An HS256 JWT keyed with arbitrary bytes (PyJWT itself refuses to use a PEM so)."""

    def part(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}
    signing = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing, hashlib.sha256).digest())
    return (signing + b"." + signature.rstrip(b"=")).decode()


def public_key_file(tmp_path: Path, private: Any) -> str:
    path = tmp_path / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ed25519.Ed25519PrivateKey.generate, "EdDSA"),
    ],
)
async def test_asymmetric_jwts_are_checked_with_the_configured_public_key(
    settings: Settings, engine: AsyncEngine, tmp_path: Path, make_key: Any, algorithm: str
) -> None:
    private = make_key()
    app = create_app(tenants(settings, jwt_public_key_file=public_key_file(tmp_path, private)))
    async with running(app), in_process_client(app) as client:
        good = await client.post(
            "/v1/session", json={"message": "m"}, headers=bearer(minted(private, algorithm))
        )
        assert good.status_code == 200, good.text
        stranger = make_key()
        forged = await client.post(
            "/v1/session", json={"message": "m"}, headers=bearer(minted(stranger, algorithm))
        )
        assert forged.status_code == 401
        # The algorithm comes from the key, never from the token: an HS256 token signed
        # with the public key's bytes (the classic confusion) is refused.
        pem = await asyncio.to_thread(Path(public_key_file(tmp_path, private)).read_text)
        confused = await client.post(
            "/v1/session",
            json={"message": "m"},
            headers=bearer(hs256_signed_with(pem.encode())),
        )
        assert confused.status_code == 401


async def test_the_schema_says_the_turn_api_wants_a_bearer(client: AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/session"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
