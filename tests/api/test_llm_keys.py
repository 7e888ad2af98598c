"""Provider API keys (DESIGN §9): encrypted at rest, never shown, audited or logged, not kept
by idempotency; the secrets key generated once, configured, shared by replicas, checked at
start."""

import logging
import os
import stat
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from runyard.app import create_app
from runyard.llm.secrets import KEY_FILE, SecretBox, load_secrets_key
from runyard.problems import (
    LlmProviderKeyUnreadable,
)
from runyard.settings import Settings
from tests.llm_support import PROVIDERS, api_key, llm, model, provider, stored_key
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_the_api_key_is_encrypted_at_rest_and_never_shown_audited_or_logged(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # statements and parameters
    secret, rotated = api_key(), api_key()
    bodies: list[str] = []

    async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await client.request(method, path, **kwargs)
        bodies.append(response.text)
        return response

    created = (
        await call(
            "POST", PROVIDERS, json={"name": "p", "provider_type": "openai", "api_key": secret}
        )
    ).json()
    assert created["api_key_set"] is True and "api_key" not in created
    stored = await stored_key(app, created["id"])
    assert stored is not None and secret not in stored
    assert SecretBox(load_secrets_key(settings)).decrypt(stored) == secret

    await call("GET", PROVIDERS)
    await call("GET", f"{PROVIDERS}/{created['id']}")
    patched = await call("PATCH", f"{PROVIDERS}/{created['id']}", json={"api_key": rotated})
    assert patched.json()["api_key_set"] is True
    assert (
        SecretBox(load_secrets_key(settings)).decrypt(str(await stored_key(app, created["id"])))
        == rotated
    )
    await call("POST", PROVIDERS, json={"name": "p", "provider_type": "openai", "api_key": secret})
    await call(
        "POST",
        PROVIDERS,
        json={"name": "q", "provider_type": "x", "api_key": secret, "base_url": 1},
    )
    await call(
        "PATCH", f"{PROVIDERS}/{created['id']}", json={"api_key": secret, "base_url": "ftp://x"}
    )
    await call(
        "POST",
        PROVIDERS,
        json={"name": "q", "provider_type": "openai", "api_key": secret},
        headers={"Idempotency-Key": "k1"},
    )
    served = await call("POST", f"{PROVIDERS}/{created['id']}/models", json={"model_id": "m"})
    resolved = await llm(app).resolve("ws_default", served.json()["id"])
    assert resolved.config.api_key == rotated
    cleared = await call("PATCH", f"{PROVIDERS}/{created['id']}", json={"api_key": None})
    assert cleared.json()["api_key_set"] is False
    assert await stored_key(app, created["id"]) is None
    assert (await llm(app).resolve("ws_default", served.json()["id"])).config.api_key is None
    audit = await call("GET", "/v1/audit", params={"limit": 200})
    await call("DELETE", f"{PROVIDERS}/{created['id']}")

    for body in bodies:
        assert secret not in body and rotated not in body
    keyed = [e for e in audit.json()["data"] if e["action"].startswith("llm_provider.")]
    assert [e["details"].get("api_key_set") for e in keyed] == [False, True, True, True]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert secret not in logged and rotated not in logged
    assert secret not in caplog.text and rotated not in caplog.text


async def test_provider_creation_is_not_covered_by_idempotency_keys(
    client: httpx.AsyncClient,
) -> None:
    """Its body holds the key, whose digest the idempotency table would keep; a retry is
    safe anyway: the name is taken."""
    body = {"name": "p", "provider_type": "openai", "api_key": api_key()}
    headers = {"Idempotency-Key": "same"}
    first = await client.post(PROVIDERS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    second = await client.post(PROVIDERS, json=body, headers=headers)
    assert_problem(second, 409, "llm_provider_exists")
    assert "idempotent-replayed" not in second.headers


async def test_the_generated_secrets_key_is_kept_and_reused_across_restarts(
    settings: Settings,
) -> None:
    secret = api_key()
    first = create_app(settings)
    async with (
        LifespanManager(first),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first), base_url="http://runyard.test"
        ) as client,
    ):
        made = await provider(client, "p", api_key=secret)
        served = await model(client, made["id"])
    path = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    generated = path.read_bytes()
    second = create_app(settings)
    async with LifespanManager(second):
        resolved = await llm(second).resolve("ws_default", served["id"])
    assert resolved.config.api_key == secret
    assert path.read_bytes() == generated


async def test_a_configured_secrets_key_is_used_and_replicas_need_the_same_one(
    settings: Settings,
) -> None:
    from cryptography.fernet import Fernet

    shared = settings.model_copy(update={"secrets_key": SecretStr(Fernet.generate_key().decode())})
    secret = api_key()
    app = create_app(shared)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://runyard.test"
        ) as client,
    ):
        served = await model(client, (await provider(client, "p", api_key=secret))["id"])
    assert not (settings.data_dir / KEY_FILE).exists()
    other = settings.model_copy(update={"secrets_key": SecretStr(Fernet.generate_key().decode())})
    stranger = create_app(other)
    async with LifespanManager(stranger):
        with pytest.raises(LlmProviderKeyUnreadable) as unreadable:
            await llm(stranger).resolve("ws_default", served["id"])
    assert unreadable.value.status == 503 and secret not in unreadable.value.detail
    again = create_app(shared)
    async with LifespanManager(again):
        assert (await llm(again).resolve("ws_default", served["id"])).config.api_key == secret


async def test_an_invalid_secrets_key_fails_the_start_clearly(settings: Settings) -> None:
    bad = "not-a-fernet-key-but-a-secret-anyway"
    broken = settings.model_copy(update={"secrets_key": SecretStr(bad)})
    with pytest.raises(ValueError, match="RUNYARD_SECRETS_KEY is not a Fernet key") as failed:
        async with LifespanManager(create_app(broken)):
            pass
    assert bad not in str(failed.value)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / KEY_FILE).write_text("garbage")
    with pytest.raises(ValueError, match=r"secrets\.key is not a Fernet key"):
        async with LifespanManager(create_app(settings)):
            pass


async def test_the_secrets_key_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNYARD_SECRETS_KEY", "from-env")
    configured = Settings()
    assert configured.secrets_key is not None
    assert configured.secrets_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(configured)
