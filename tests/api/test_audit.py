"""The audit log (DESIGN §11): an entry per mutation, listed with filters and cursors."""

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio


async def test_mutations_are_listed_newest_first_with_filters_and_cursors(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client, headers={"X-User-Id": "alice"})
    runs = [await make_run(client, headers={"X-User-Id": "bob"}) for _ in range(3)]
    cancel = await client.post(
        f"/v1/runs/{runs[0]['id']}/cancel", headers={"X-User-Id": "carol", "X-Request-Id": "req-42"}
    )
    assert cancel.status_code == 200

    page = (await client.get("/v1/audit")).json()
    actions = [e["action"] for e in page["data"]]
    assert actions[0] == "run.cancel" and actions[-1] == "pipeline.create"
    newest = page["data"][0]
    assert newest["actor"] == "carol" and newest["request_id"] == "req-42"
    assert (newest["target_type"], newest["target_id"]) == ("run", runs[0]["id"])
    assert newest["workspace_id"] == "ws_default" and newest["created_at"].endswith("Z")

    by_bob = (await client.get("/v1/audit", params={"actor": "bob"})).json()["data"]
    assert {e["action"] for e in by_bob} == {"run.create"} and len(by_bob) == 3
    one_run = await client.get(
        "/v1/audit", params={"target_type": "run", "target_id": runs[0]["id"]}
    )
    assert [e["action"] for e in one_run.json()["data"]] == ["run.cancel", "run.create"]

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        chunk = (await client.get("/v1/audit", params=params)).json()
        seen += [e["id"] for e in chunk["data"]]
        cursor = chunk["next_cursor"]
        if not chunk["has_more"]:
            break
    assert seen == [e["id"] for e in page["data"]]
    assert_problem(await client.get("/v1/audit", params={"cursor": "nope"}), 400, "invalid_cursor")
    other = await client.get("/v1/audit", headers={"X-Workspace-Id": "ws_missing"})
    assert_problem(other, 404, "workspace_not_found")
