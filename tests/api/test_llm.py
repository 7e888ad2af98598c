"""LLM providers and models (DESIGN §9, §15): admins register providers (API keys encrypted at
rest, never shown, logged or audited) and their models; any caller reads them; one default
of each per workspace; ``LlmService.resolve`` hands callers a model ready to call."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runyard.llm.types import Prices, ProviderConfig, ResolvedModel
from runyard.problems import (
    LlmModelDisabled,
    LlmModelNotFound,
    NoDefaultModel,
)
from tests.api.test_isolation import add_workspace
from tests.llm_support import MODELS, PROVIDERS, api_key, llm, model, provider
from tests.support import assert_problem
from tests.webhook_support import auth, key

pytestmark = pytest.mark.anyio

PROVIDER_KEYS = {
    "id",
    "object",
    "workspace_id",
    "name",
    "provider_type",
    "base_url",
    "api_key_set",
    "is_default",
    "status",
    "created_at",
    "updated_at",
}
MODEL_KEYS = {
    "id",
    "object",
    "workspace_id",
    "provider_id",
    "model_id",
    "display_name",
    "capabilities",
    "context_window",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "is_default",
    "status",
    "created_at",
    "updated_at",
}


async def test_admins_create_list_read_change_and_delete_providers(
    client: httpx.AsyncClient,
) -> None:
    created = await provider(
        client, "local", provider_type="openai_compatible", base_url="http://localhost:11434/v1"
    )
    assert created.keys() == PROVIDER_KEYS
    assert created["id"].startswith("prv_") and created["object"] == "llm_provider"
    assert (
        created["workspace_id"] == "ws_default" and created["provider_type"] == "openai_compatible"
    )
    assert created["base_url"] == "http://localhost:11434/v1"
    assert created["api_key_set"] is False and created["is_default"] is False
    assert created["status"] == "active"
    second = await provider(client, "anthropic", provider_type="anthropic", api_key=api_key())
    assert second["api_key_set"] is True and second["base_url"] is None

    listed = (await client.get(PROVIDERS)).json()
    assert [p["id"] for p in listed["data"]] == [second["id"], created["id"]]  # newest first
    assert listed["has_more"] is False and listed["next_cursor"] is None
    page = (await client.get(PROVIDERS, params={"limit": 1})).json()
    assert [p["id"] for p in page["data"]] == [second["id"]] and page["has_more"] is True
    rest = (await client.get(PROVIDERS, params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [p["id"] for p in rest["data"]] == [created["id"]] and rest["has_more"] is False
    assert (await client.get(f"{PROVIDERS}/{created['id']}")).json() == created

    changed = await client.patch(
        f"{PROVIDERS}/{created['id']}", json={"name": "ollama", "status": "disabled"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "ollama" and changed.json()["status"] == "disabled"
    assert changed.json()["base_url"] == created["base_url"]
    assert changed.json()["updated_at"] >= created["updated_at"]
    unchanged = await client.patch(f"{PROVIDERS}/{created['id']}", json={})
    assert unchanged.json() == changed.json()
    to_openai = await client.patch(
        f"{PROVIDERS}/{created['id']}", json={"provider_type": "openai", "base_url": None}
    )
    assert to_openai.status_code == 200, to_openai.text
    assert to_openai.json()["base_url"] is None

    duplicate = await client.post(PROVIDERS, json={"name": "anthropic", "provider_type": "openai"})
    assert_problem(duplicate, 409, "llm_provider_exists")
    renamed = await client.patch(f"{PROVIDERS}/{created['id']}", json={"name": "anthropic"})
    assert_problem(renamed, 409, "llm_provider_exists")

    served = await model(client, created["id"])
    assert (await client.delete(f"{PROVIDERS}/{created['id']}")).status_code == 204
    for path in (f"{PROVIDERS}/{created['id']}", f"{PROVIDERS}/{created['id']}/models"):
        assert_problem(await client.get(path), 404, "llm_provider_not_found")
    assert_problem(
        await client.delete(f"{PROVIDERS}/{created['id']}"), 404, "llm_provider_not_found"
    )
    assert_problem(await client.get(f"{MODELS}/{served['id']}"), 404, "llm_model_not_found")

    audit = (await client.get("/v1/audit", params={"target_id": created["id"]})).json()["data"]
    assert [e["action"] for e in audit] == [
        "llm_provider.delete",
        "llm_provider.update",
        "llm_provider.update",
        "llm_provider.create",
    ]
    assert audit[0]["details"] == {"name": "ollama", "models_deleted": 1}
    assert audit[-1]["details"]["api_key_set"] is False


async def test_models_are_created_under_a_provider_or_with_provider_id_and_filtered(
    client: httpx.AsyncClient,
) -> None:
    openai = await provider(client, "openai")
    other = await provider(client, "other")
    mini = await model(
        client,
        openai["id"],
        display_name="GPT-4o mini",
        capabilities=["chat", "tools", "chat"],
        context_window=128_000,
        input_price_per_mtok=0.15,
        output_price_per_mtok=0.6,
    )
    assert mini.keys() == MODEL_KEYS
    assert mini["id"].startswith("mdl_") and mini["object"] == "llm_model"
    assert mini["provider_id"] == openai["id"] and mini["model_id"] == "gpt-4o-mini"
    assert mini["capabilities"] == ["chat", "tools"]  # each once, in order
    assert mini["context_window"] == 128_000
    assert mini["input_price_per_mtok"] == 0.15 and mini["output_price_per_mtok"] == 0.6
    assert mini["is_default"] is False and mini["status"] == "active"
    bare = await client.post(MODELS, json={"provider_id": other["id"], "model_id": "llama3"})
    assert bare.status_code == 201, bare.text
    llama = bare.json()
    assert llama["provider_id"] == other["id"] and llama["capabilities"] == []
    assert llama["display_name"] is None and llama["input_price_per_mtok"] is None

    everything = (await client.get(MODELS)).json()
    assert [m["id"] for m in everything["data"]] == [llama["id"], mini["id"]]
    of_openai = (await client.get(MODELS, params={"provider_id": openai["id"]})).json()
    assert [m["id"] for m in of_openai["data"]] == [mini["id"]]
    nested = (await client.get(f"{PROVIDERS}/{openai['id']}/models")).json()
    assert nested == of_openai
    unknown = await client.get(MODELS, params={"provider_id": "prv_nope"})
    assert_problem(unknown, 404, "llm_provider_not_found")
    assert (await client.get(f"{MODELS}/{mini['id']}")).json() == mini

    changed = await client.patch(
        f"{MODELS}/{mini['id']}",
        json={"display_name": None, "input_price_per_mtok": None, "status": "disabled"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] is None and changed.json()["input_price_per_mtok"] is None
    assert changed.json()["output_price_per_mtok"] == 0.6 and changed.json()["status"] == "disabled"

    assert (await client.delete(f"{MODELS}/{mini['id']}")).status_code == 204
    assert_problem(await client.get(f"{MODELS}/{mini['id']}"), 404, "llm_model_not_found")
    assert_problem(
        await client.patch(f"{MODELS}/{mini['id']}", json={}), 404, "llm_model_not_found"
    )
    orphan = await client.post(f"{PROVIDERS}/prv_nope/models", json={"model_id": "x"})
    assert_problem(orphan, 404, "llm_provider_not_found")
    orphan = await client.post(MODELS, json={"provider_id": "prv_nope", "model_id": "x"})
    assert_problem(orphan, 404, "llm_provider_not_found")
    audit = (await client.get("/v1/audit", params={"target_id": mini["id"]})).json()["data"]
    assert [e["action"] for e in audit] == [
        "llm_model.delete",
        "llm_model.update",
        "llm_model.create",
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "provider_type": "openai_compatible"}, ["body", "base_url"]),
        ({"name": "x", "provider_type": "cohere"}, ["body", "provider_type"]),
        ({"name": "", "provider_type": "openai"}, ["body", "name"]),
        ({"provider_type": "openai"}, ["body", "name"]),
        ({"name": "x", "provider_type": "openai", "base_url": "ftp://h/v1"}, ["body", "base_url"]),
        ({"name": "x", "provider_type": "openai", "base_url": "not a url"}, ["body", "base_url"]),
        ({"name": "x", "provider_type": "openai", "base_url": "https:///v1"}, ["body", "base_url"]),
        (
            {"name": "x", "provider_type": "openai", "base_url": "https://u:p@h/v1"},
            ["body", "base_url"],
        ),
        (
            {"name": "x", "provider_type": "openai", "base_url": "http://h:99999"},
            ["body", "base_url"],
        ),
        ({"name": "x", "provider_type": "openai", "api_key": ""}, ["body", "api_key"]),
        ({"name": "x", "provider_type": "openai", "api_key": 5}, ["body", "api_key"]),
        ({"name": "x", "provider_type": "openai", "status": "paused"}, ["body", "status"]),
        ({"name": "x", "provider_type": "openai", "extra": 1}, ["body", "extra"]),
    ],
)
async def test_invalid_providers_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    problem = assert_problem(await client.post(PROVIDERS, json=body), 400, "invalid_input")
    assert loc in [e["loc"][:2] for e in problem["errors"]], problem


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "model_id"]),
        ({"model_id": ""}, ["body", "model_id"]),
        ({"model_id": "m", "context_window": 0}, ["body", "context_window"]),
        ({"model_id": "m", "context_window": 10**8 + 1}, ["body", "context_window"]),
        ({"model_id": "m", "input_price_per_mtok": -0.01}, ["body", "input_price_per_mtok"]),
        ({"model_id": "m", "output_price_per_mtok": 1e7}, ["body", "output_price_per_mtok"]),
        ({"model_id": "m", "capabilities": ["has space"]}, ["body", "capabilities"]),
        ({"model_id": "m", "capabilities": "chat"}, ["body", "capabilities"]),
        ({"model_id": "m", "capabilities": ["c"] * 33}, ["body", "capabilities"]),
        ({"model_id": "m", "status": "gone"}, ["body", "status"]),
        ({"model_id": "m", "provider_id": "prv_x"}, ["body", "provider_id"]),  # not here
    ],
)
async def test_invalid_models_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    served_by = await provider(client)
    response = await client.post(f"{PROVIDERS}/{served_by['id']}/models", json=body)
    problem = assert_problem(response, 400, "invalid_input")
    assert loc in [e["loc"][:2] for e in problem["errors"]], problem


async def test_invalid_changes_are_400(client: httpx.AsyncClient) -> None:
    local = await provider(
        client, "local", provider_type="openai_compatible", base_url="http://h/v1"
    )
    served = await model(client, local["id"])
    for path, body, loc in (
        (f"{PROVIDERS}/{local['id']}", {"base_url": None}, ["body", "base_url"]),
        (f"{PROVIDERS}/{local['id']}", {"name": None}, ["body", "name"]),
        (f"{PROVIDERS}/{local['id']}", {"is_default": None}, ["body", "is_default"]),
        (f"{PROVIDERS}/{local['id']}", {"base_url": "file:///etc"}, ["body", "base_url"]),
        (f"{MODELS}/{served['id']}", {"capabilities": None}, ["body", "capabilities"]),
        (f"{MODELS}/{served['id']}", {"model_id": None}, ["body", "model_id"]),
        (f"{MODELS}/{served['id']}", {"context_window": -1}, ["body", "context_window"]),
        (f"{MODELS}/{served['id']}", {"provider_id": "prv_x"}, ["body", "provider_id"]),
    ):
        problem = assert_problem(await client.patch(path, json=body), 400, "invalid_input")
        assert loc in [e["loc"][:2] for e in problem["errors"]], (body, problem)
    missing = await client.post(MODELS, json={"model_id": "m"})
    assert ["body", "provider_id"] in [
        e["loc"] for e in assert_problem(missing, 400, "invalid_input")["errors"]
    ]


async def test_setting_a_default_unsets_the_workspaces_other_default(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_workspace(app, "ws_b")
    in_b = {"X-Workspace-Id": "ws_b"}
    first = await provider(client, "first", is_default=True)
    b_default = await provider(client, "first", headers=in_b, is_default=True)
    second = await provider(client, "second", is_default=True)
    assert (await client.get(f"{PROVIDERS}/{first['id']}")).json()["is_default"] is False
    assert (await client.get(f"{PROVIDERS}/{second['id']}")).json()["is_default"] is True
    back = await client.patch(f"{PROVIDERS}/{first['id']}", json={"is_default": True})
    assert back.json()["is_default"] is True
    defaults = [p["id"] for p in (await client.get(PROVIDERS)).json()["data"] if p["is_default"]]
    assert defaults == [first["id"]]
    assert (await client.get(f"{PROVIDERS}/{b_default['id']}", headers=in_b)).json()["is_default"]

    a = await model(client, first["id"], "a", is_default=True)
    b = await model(client, second["id"], "b")
    assert (await llm(app).resolve("ws_default", None)).id == a["id"]
    made_default = await client.patch(f"{MODELS}/{b['id']}", json={"is_default": True})
    assert made_default.json()["is_default"] is True
    assert (await client.get(f"{MODELS}/{a['id']}")).json()["is_default"] is False
    assert (await llm(app).resolve("ws_default", None)).id == b["id"]
    c = await client.post(
        MODELS, json={"provider_id": first["id"], "model_id": "c", "is_default": True}
    )
    assert (await client.get(f"{MODELS}/{b['id']}")).json()["is_default"] is False
    assert (await llm(app).resolve("ws_default", None)).id == c.json()["id"]
    audit = (await client.get("/v1/audit", params={"target_id": c.json()["id"]})).json()["data"]
    assert audit[0]["details"]["replaced_default"] == b["id"]


async def test_resolve_returns_the_decrypted_key_prices_and_the_default_model(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    service = llm(app)
    with pytest.raises(NoDefaultModel):
        await service.resolve("ws_default", None)  # no model at all
    secret = api_key()
    local = await provider(
        client,
        "local",
        provider_type="openai_compatible",
        base_url="http://127.0.0.1:9/v1",
        api_key=secret,
    )
    only = await model(
        client,
        local["id"],
        "llama3",
        context_window=8192,
        input_price_per_mtok=0.5,
        output_price_per_mtok=1.5,
    )
    expected = ResolvedModel(
        id=only["id"],
        provider_id=local["id"],
        model="llama3",
        config=ProviderConfig("openai_compatible", "http://127.0.0.1:9/v1", secret),
        prices=Prices(0.5, 1.5),
        context_window=8192,
    )
    assert await service.resolve("ws_default", None) == expected  # the only active one
    assert await service.resolve("ws_default", only["id"]) == expected
    assert secret not in repr(expected)

    other = await model(client, local["id"], "mistral")
    with pytest.raises(NoDefaultModel) as two:
        await service.resolve("ws_default", None)
    assert two.value.status == 400 and "is_default" in two.value.detail
    await client.patch(f"{MODELS}/{other['id']}", json={"status": "disabled"})
    assert (await service.resolve("ws_default", None)).id == only["id"]  # one active again
    with pytest.raises(LlmModelDisabled):
        await service.resolve("ws_default", other["id"])
    await client.patch(f"{MODELS}/{other['id']}", json={"status": "active", "is_default": True})
    assert (await service.resolve("ws_default", None)).model == "mistral"
    await client.patch(f"{PROVIDERS}/{local['id']}", json={"status": "disabled"})
    with pytest.raises(LlmModelDisabled) as disabled:
        await service.resolve("ws_default", None)
    assert disabled.value.status == 409 and disabled.value.code == "llm_model_disabled"
    with pytest.raises(LlmModelNotFound) as unknown:
        await service.resolve("ws_default", "mdl_nope")
    assert unknown.value.status == 404
    assert await service.exists("ws_default", only["id"]) is True
    assert await service.exists("ws_default", "mdl_nope") is False
    await add_workspace(app, "ws_b")
    assert await service.exists("ws_b", only["id"]) is False
    with pytest.raises(LlmModelNotFound):
        await service.resolve("ws_b", only["id"])
    with pytest.raises(NoDefaultModel):
        await service.resolve("ws_b", None)


async def test_members_and_viewers_read_but_only_admins_change(client: httpx.AsyncClient) -> None:
    admin = auth(await key(client, "admin"))
    made = await provider(client, "p", headers=admin, api_key=api_key())
    served = await model(client, made["id"], headers=admin)
    for role in ("member", "viewer"):
        as_role = auth(await key(client, role, admin))
        for path in (
            PROVIDERS,
            f"{PROVIDERS}/{made['id']}",
            f"{PROVIDERS}/{made['id']}/models",
            MODELS,
            f"{MODELS}/{served['id']}",
        ):
            assert (await client.get(path, headers=as_role)).status_code == 200, (role, path)
        for method, path, body in (
            ("POST", PROVIDERS, {"name": "q", "provider_type": "openai"}),
            ("PATCH", f"{PROVIDERS}/{made['id']}", {"status": "disabled"}),
            ("DELETE", f"{PROVIDERS}/{made['id']}", None),
            ("POST", f"{PROVIDERS}/{made['id']}/models", {"model_id": "m"}),
            ("POST", MODELS, {"provider_id": made["id"], "model_id": "m"}),
            ("PATCH", f"{MODELS}/{served['id']}", {"status": "disabled"}),
            ("DELETE", f"{MODELS}/{served['id']}", None),
        ):
            response = await client.request(method, path, json=body, headers=as_role)
            assert_problem(response, 403, "forbidden")
    runner = auth(await key(client, "runner", admin))
    assert_problem(await client.get(PROVIDERS, headers=runner), 403, "forbidden")
    assert_problem(await client.get(PROVIDERS), 401, "unauthorized")
    assert (await client.get(f"{PROVIDERS}/{made['id']}", headers=admin)).json()[
        "status"
    ] == "active"


async def test_another_workspaces_providers_and_models_are_not_found(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_workspace(app, "ws_b")
    in_b = {"X-Workspace-Id": "ws_b"}
    made = await provider(client, "shared-name")
    served = await model(client, made["id"])
    for method, path, body in (
        ("GET", f"{PROVIDERS}/{made['id']}", None),
        ("PATCH", f"{PROVIDERS}/{made['id']}", {"status": "disabled"}),
        ("DELETE", f"{PROVIDERS}/{made['id']}", None),
        ("GET", f"{PROVIDERS}/{made['id']}/models", None),
        ("POST", f"{PROVIDERS}/{made['id']}/models", {"model_id": "m"}),
        ("POST", MODELS, {"provider_id": made["id"], "model_id": "m"}),
        ("GET", MODELS + f"?provider_id={made['id']}", None),
    ):
        response = await client.request(method, path, json=body, headers=in_b)
        assert_problem(response, 404, "llm_provider_not_found")
    for method, path, body in (
        ("GET", f"{MODELS}/{served['id']}", None),
        ("PATCH", f"{MODELS}/{served['id']}", {"status": "disabled"}),
        ("DELETE", f"{MODELS}/{served['id']}", None),
    ):
        response = await client.request(method, path, json=body, headers=in_b)
        assert_problem(response, 404, "llm_model_not_found")
    assert (await client.get(PROVIDERS, headers=in_b)).json()["data"] == []
    assert (await client.get(MODELS, headers=in_b)).json()["data"] == []
    await provider(client, "shared-name", headers=in_b)  # names are per workspace
    assert (await client.get(f"{MODELS}/{served['id']}")).json()["status"] == "active"
    assert (await client.get(f"{PROVIDERS}/{made['id']}")).json()["status"] == "active"
