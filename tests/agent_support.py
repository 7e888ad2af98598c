"""Setting up a model, an agent and a session over the API, for agent tests."""

from typing import Any

import httpx

from tests.llm_fake import FakeModelServer

PROVIDER_KEY = "sk-test-SECRET-9f8e7d6c5b4a"


async def make_model(
    client: httpx.AsyncClient,
    server: FakeModelServer,
    *,
    provider_type: str = "openai_compatible",
    prices: tuple[float, float] = (1.0, 2.0),
) -> dict[str, Any]:
    """A provider pointing at the fake server (with a key) and its default model."""
    base_url = server.url if provider_type == "anthropic" else f"{server.url}/v1"
    provider = await client.post(
        "/v1/llm-providers",
        json={
            "name": f"fake-{provider_type}",
            "provider_type": provider_type,
            "base_url": base_url,
            "api_key": PROVIDER_KEY,
            "is_default": True,
        },
    )
    assert provider.status_code == 201, provider.text
    model = await client.post(
        f"/v1/llm-providers/{provider.json()['id']}/models",
        json={
            "model_id": "fake-model",
            "capabilities": ["tools", "streaming"],
            "context_window": 128000,
            "input_price_per_mtok": prices[0],
            "output_price_per_mtok": prices[1],
            "is_default": True,
        },
    )
    assert model.status_code == 201, model.text
    return dict(model.json())


async def make_agent(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "helper", "system_prompt": "You are terse.", **fields}
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_session(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/agents/{agent_id}/sessions", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def ready_session(
    client: httpx.AsyncClient, server: FakeModelServer, **agent_fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A default model on the fake server, an agent and a session with it."""
    await make_model(client, server)
    agent = await make_agent(client, **agent_fields)
    return agent, await make_session(client, agent["id"])


async def say(
    client: httpx.AsyncClient, agent_id: str, session_id: str, content: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/agents/{agent_id}/sessions/{session_id}/messages",
        json={"role": "user", "content": content, **extra},
    )


async def session_events(
    client: httpx.AsyncClient, agent_id: str, session_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/agents/{agent_id}/sessions/{session_id}/events", params={"limit": 1000}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def messages(
    client: httpx.AsyncClient, agent_id: str, session_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/agents/{agent_id}/sessions/{session_id}/messages", params={"limit": 200}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])
