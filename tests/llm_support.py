"""LLM providers and models over the API, for tests."""

import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from runyard.llm.service import LlmService
from runyard.llm.tables import llm_providers

PROVIDERS = "/v1/llm-providers"
MODELS = "/v1/llm-models"


def api_key() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


async def provider(
    client: httpx.AsyncClient,
    name: str = "openai",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    response = await client.post(
        PROVIDERS, json={"name": name, "provider_type": "openai", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def model(
    client: httpx.AsyncClient,
    provider_id: str,
    model_id: str = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    response = await client.post(
        f"{PROVIDERS}/{provider_id}/models", json={"model_id": model_id, **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def llm(app: FastAPI) -> LlmService:
    service: LlmService = app.state.services.llm
    return service


async def stored_key(app: FastAPI, provider_id: str) -> str | None:
    async with app.state.services.db.read() as conn:
        query = sa.select(llm_providers.c.api_key_encrypted).where(
            llm_providers.c.id == provider_id
        )
        value: str | None = (await conn.execute(query)).scalar_one()
    return value
