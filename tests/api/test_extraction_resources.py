"""Prompts with immutable versions, model configs and documents (DESIGN §10, §15) on each
database: what they store, and the clear problems bad input gets."""

import hashlib

import httpx
import pytest

from tests.extraction_support import (
    add_version,
    make_config,
    make_document,
    make_prompt,
    tiny_pdf,
)
from tests.llm_support import model, provider
from tests.support import assert_problem

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_a_prompt_gets_numbered_immutable_versions(client: httpx.AsyncClient) -> None:
    prompt = await make_prompt(client, description="Invoices")
    assert prompt["id"].startswith("prm_")
    assert prompt["latest_version"] == 1
    second = await add_version(
        client,
        prompt["id"],
        "Extract the fields in {{ language }}.\n{{ document }}",
        variables=["language"],
    )
    assert (second["version"], second["variables"]) == (2, ["language"])

    shown = (await client.get(f"/v1/prompts/{prompt['id']}")).json()
    assert shown["latest_version"] == 2
    first = (await client.get(f"/v1/prompts/{prompt['id']}/versions/1")).json()
    assert first["template"].startswith("Extract the invoice's fields")
    page = (await client.get(f"/v1/prompts/{prompt['id']}/versions?limit=1")).json()
    assert [v["version"] for v in page["data"]] == [2]
    rest = await client.get(
        f"/v1/prompts/{prompt['id']}/versions", params={"cursor": page["next_cursor"]}
    )
    assert [v["version"] for v in rest.json()["data"]] == [1]
    assert not rest.json()["has_more"]

    # a version cannot be changed: there is no route that would
    changed = await client.patch(
        f"/v1/prompts/{prompt['id']}/versions/1", json={"template": "other"}
    )
    assert changed.status_code == 405
    renamed = await client.patch(f"/v1/prompts/{prompt['id']}", json={"name": "invoices"})
    assert renamed.json()["name"] == "invoices"
    assert renamed.json()["latest_version"] == 2
    audit = (await client.get("/v1/audit", params={"target": prompt["id"]})).json()["data"]
    assert {e["action"] for e in audit} >= {"prompt.create", "prompt.version.create"}


async def test_templates_are_checked_when_a_version_is_made(client: httpx.AsyncClient) -> None:
    undeclared = await client.post(
        "/v1/prompts", json={"name": "p", "template": "{{ language }}: {{ document }}"}
    )
    problem = assert_problem(undeclared, 400, "invalid_input")
    assert "language" in problem["detail"]
    broken = await client.post("/v1/prompts", json={"name": "p", "template": "{{ document "})
    assert "does not parse" in assert_problem(broken, 400, "invalid_input")["detail"]
    declared_document = await client.post(
        "/v1/prompts", json={"name": "p", "template": "x", "variables": ["document"]}
    )
    assert_problem(declared_document, 400, "invalid_input")

    prompt = await make_prompt(client, name="p")
    assert_problem(await client.post("/v1/prompts", json={"name": "p"}), 409, "prompt_exists")
    missing = await client.post("/v1/prompts/prm_missing/versions", json={"template": "x"})
    assert_problem(missing, 404, "prompt_not_found")
    no_such_version = await client.get(f"/v1/prompts/{prompt['id']}/versions/9")
    assert_problem(no_such_version, 404, "prompt_version_not_found")
    empty = await client.post("/v1/prompts", json={"name": "empty"})
    assert empty.json()["latest_version"] is None


async def test_a_model_config_names_a_model_of_the_workspace(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/v1/model-configs", json={"name": "c", "model_id": "mdl_missing"})
    assert_problem(unknown, 404, "llm_model_not_found")
    created = await model(client, (await provider(client))["id"])
    config = await make_config(client, created["id"], temperature=0, max_tokens=500)
    assert config["id"].startswith("mcf_")
    assert config["response_format"] == {"type": "json_object"}
    assert (config["temperature"], config["max_tokens"]) == (0, 500)

    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    strict = await make_config(
        client,
        created["id"],
        name="schema",
        response_format={"type": "json_schema", "json_schema": {"schema": schema}},
    )
    assert strict["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": schema},
    }
    bad_schema = await client.post(
        "/v1/model-configs",
        json={
            "name": "bad",
            "model_id": created["id"],
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}},
        },
    )
    assert_problem(bad_schema, 400, "invalid_input")
    text_format = await client.post(
        "/v1/model-configs",
        json={"name": "t", "model_id": created["id"], "response_format": {"type": "text"}},
    )
    assert_problem(text_format, 400, "invalid_input")
    duplicate = await client.post(
        "/v1/model-configs", json={"name": "fake-t0", "model_id": created["id"]}
    )
    assert_problem(duplicate, 409, "model_config_exists")
    listed = (await client.get("/v1/model-configs")).json()["data"]
    assert [c["name"] for c in listed] == ["schema", "fake-t0"]


async def test_documents_keep_their_text_hash_and_ground_truth(client: httpx.AsyncClient) -> None:
    text = "Invoice 42\nACME Corp\nTotal: 100.00 EUR\n"
    document = await make_document(client, text, {"number": "42", "total": 100})
    assert document["id"].startswith("doc_")
    assert document["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (document["size_bytes"], document["characters"]) == (len(text), len(text))
    assert document["has_ground_truth"] is True
    assert document["content"] == text

    listed = (await client.get("/v1/documents")).json()["data"]
    assert listed[0]["id"] == document["id"] and "content" not in listed[0]
    assert listed[0]["characters"] == len(text)

    cleared = await client.patch(f"/v1/documents/{document['id']}", json={"ground_truth": None})
    assert cleared.json()["has_ground_truth"] is False
    restored = await client.patch(
        f"/v1/documents/{document['id']}", json={"ground_truth": {"number": "42"}}
    )
    assert restored.json()["ground_truth"] == {"number": "42"}
    assert (await client.delete(f"/v1/documents/{document['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/documents/{document['id']}"), 404, "document_not_found")


async def test_uploads_of_text_markdown_json_and_pdf(client: httpx.AsyncClient) -> None:
    pdf = tiny_pdf("Invoice 7 from Globex", "Total 12.50")
    uploaded = await client.post(
        "/v1/documents",
        files={"file": ("scan.pdf", pdf, "application/pdf")},
        data={"ground_truth": '{"number": 7}'},
    )
    assert uploaded.status_code == 201, uploaded.text
    document = (await client.get(f"/v1/documents/{uploaded.json()['id']}")).json()
    assert document["content"] == "Invoice 7 from Globex\n\nTotal 12.50"
    assert document["content_type"] == "application/pdf"
    assert document["name"] == "scan.pdf"
    assert document["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert document["size_bytes"] == len(pdf)
    assert document["ground_truth"] == {"number": 7}

    markdown = await client.post(
        "/v1/documents",
        files={"file": ("notes.md", b"# Invoice\n\n*total*: 3", "application/octet-stream")},
        data={"name": "Notes"},
    )
    assert (markdown.json()["content_type"], markdown.json()["name"]) == ("text/markdown", "Notes")
    as_json = await client.post(
        "/v1/documents", files={"file": ("a.json", b'{"a": 1}', "application/json")}
    )
    assert as_json.json()["content_type"] == "application/json"


async def test_bad_documents_get_clear_problems(client: httpx.AsyncClient) -> None:
    cases = [
        ({"file": ("x.pdf", b"%PDF-1.4 not really", "application/pdf")}, "document_unreadable"),
        ({"file": ("x.txt", b"\xff\xfe\x00bad", "text/plain")}, "document_unreadable"),
        ({"file": ("x.bin", b"abc", "image/png")}, "unsupported_document_type"),
        ({"file": ("x.txt", b"   \n", "text/plain")}, "document_empty"),
        ({"file": ("x.pdf", tiny_pdf(""), "application/pdf")}, "document_empty"),
        ({"file": ("x.json", b"{nope", "application/json")}, "document_unreadable"),
    ]
    for files, code in cases:
        assert_problem(await client.post("/v1/documents", files=files), 400, code)
    no_file = await client.post("/v1/documents", files={"other": ("a", b"b")})
    assert_problem(no_file, 400, "invalid_input")
    truth = await client.post(
        "/v1/documents",
        files={"file": ("a.txt", b"text", "text/plain")},
        data={"ground_truth": "[1, 2]"},
    )
    assert_problem(truth, 400, "invalid_input")
    not_json = await client.post(
        "/v1/documents",
        files={"file": ("a.txt", b"text", "text/plain")},
        data={"ground_truth": "{oops"},
    )
    assert_problem(not_json, 400, "invalid_input")
    no_content = await client.post("/v1/documents", json={"name": "x"})
    assert_problem(no_content, 400, "invalid_input")
    malformed = await client.post(
        "/v1/documents", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 400, "invalid_input")


@pytest.mark.settings(document_max_bytes=1000)
async def test_documents_over_the_size_limit_are_413(client: httpx.AsyncClient) -> None:
    big = "x" * 1001
    assert_problem(
        await client.post("/v1/documents", json={"name": "big", "content": big}),
        413,
        "payload_too_large",
    )
    upload = await client.post("/v1/documents", files={"file": ("big.txt", big.encode())})
    assert_problem(upload, 413, "payload_too_large")
    fits = await client.post("/v1/documents", files={"file": ("ok.txt", b"x" * 1000)})
    assert fits.status_code == 201, fits.text
