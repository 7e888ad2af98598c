"""The toolbox: builtins through it, bad calls, and HTTP tools against a real target on
loopback (arguments checked, errors as results, no redirects, bounded answers, SSRF)."""

import time

import httpx
import httpx2
import pytest

from runyard.agents import builtins
from runyard.agents.tools import MAX_RESULT_BYTES, PinnedTransport, Toolbox, ToolResult
from tests.agents.conftest import PARAMETERS, http_tool
from tests.conftest import free_port
from tests.mcp_support import HttpToolTarget

pytestmark = pytest.mark.timeout(60)


# -- the toolbox: builtins and bad calls ----------------------------------------------------


@pytest.mark.anyio
async def test_builtins_are_offered_and_called_through_the_toolbox(
    http: httpx.AsyncClient,
) -> None:
    declarations = [
        {"type": "builtin", "name": "calculator"},
        {"type": "builtin", "name": "current_time"},
    ]
    async with Toolbox.open(declarations, http=http, allow_private=False) as toolbox:
        assert toolbox.specs() == [builtins.CALCULATOR, builtins.CURRENT_TIME]
        assert await toolbox.call("calculator", '{"expression": "6 * 7"}') == ToolResult(
            ok=True, content={"result": 42}
        )
        refused = await toolbox.call("calculator", {"expression": "__import__('os').getcwd()"})
        assert refused == ToolResult(ok=False, error="only numbers are allowed, not strings")
        bad_zone = await toolbox.call("current_time", {"timezone": "Nowhere/Never"})
        assert not bad_zone.ok and "unknown time zone" in (bad_zone.error or "")
        assert toolbox.errors == []


@pytest.mark.anyio
async def test_an_undeclared_tool_is_an_error_result(http: httpx.AsyncClient) -> None:
    async with Toolbox.open([], http=http, allow_private=False) as toolbox:
        assert toolbox.specs() == []
        result = await toolbox.call("rm_rf", {})
    assert result == ToolResult(ok=False, error="no tool named rm_rf")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [("not json", "not valid JSON"), ("[1, 2]", "a JSON object"), ('"text"', "a JSON object")],
)
async def test_arguments_that_are_not_a_json_object_are_an_error_result(
    http: httpx.AsyncClient, arguments: str, complaint: str
) -> None:
    async with Toolbox.open(
        [{"type": "builtin", "name": "calculator"}], http=http, allow_private=False
    ) as toolbox:
        result = await toolbox.call("calculator", arguments)
    assert not result.ok and complaint in (result.error or "")


@pytest.mark.anyio
async def test_a_stored_declaration_that_is_no_longer_valid_is_reported_not_raised(
    http: httpx.AsyncClient,
) -> None:
    declarations = [
        {"type": "builtin", "name": "teleport"},
        {"type": "builtin", "name": "calculator"},
        {"type": "builtin", "name": "calculator"},
    ]
    async with Toolbox.open(declarations, http=http, allow_private=False) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["calculator"]
    assert len(toolbox.errors) == 2
    assert "tool 0: invalid declaration" in toolbox.errors[0]
    assert "two tools are named calculator" in toolbox.errors[1]


# -- http tools -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_http_tool_posts_its_arguments_and_returns_the_json_answer(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declaration = http_tool(target.url("/echo"), headers={"Authorization": "Bearer tool-token"})
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        (spec,) = toolbox.specs()
        assert (spec.name, spec.parameters) == ("forecast", PARAMETERS)
        result = await toolbox.call("forecast", {"city": "Oslo", "days": 2})
    assert result == ToolResult(ok=True, content={"received": {"city": "Oslo", "days": 2}})
    (request,) = target.requests
    assert request.method == "POST"
    assert request.json() == {"city": "Oslo", "days": 2}
    assert request.headers["authorization"] == "Bearer tool-token"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{target.port}"
    assert request.headers["user-agent"].startswith("Runyard-Agents/")


@pytest.mark.anyio
async def test_an_http_tool_answering_text_gives_the_text(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/text"))], http=http, allow_private=True
    ) as toolbox:
        result = await toolbox.call("forecast", '{"city": "Oslo"}')
    assert result == ToolResult(ok=True, content="plain words")


@pytest.mark.anyio
async def test_an_http_host_named_by_name_is_reached_at_its_checked_address(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    # `localhost` may resolve to ::1 first, where nothing listens: the next address is tried
    url = f"http://localhost:{target.port}/echo"
    async with Toolbox.open([http_tool(url)], http=http, allow_private=True) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result.ok, result.error
    assert target.requests[-1].headers["host"] == f"localhost:{target.port}"


@pytest.mark.anyio
async def test_arguments_breaking_the_schema_are_refused_without_a_request(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/echo"))], http=http, allow_private=True
    ) as toolbox:
        wrong_type = await toolbox.call("forecast", {"city": 12})
        missing = await toolbox.call("forecast", {"days": 2})
        too_few = await toolbox.call("forecast", {"city": "Oslo", "days": 0})
        extra = await toolbox.call("forecast", {"city": "Oslo", "units": "C"})
    assert wrong_type == ToolResult(
        ok=False, error="invalid arguments: city: 12 is not of type 'string'"
    )
    assert "'city' is a required property" in (missing.error or "")
    assert "days: 0 is less than the minimum of 1" in (too_few.error or "")
    assert "'units' was unexpected" in (extra.error or "")
    assert target.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 404, 429])
async def test_an_http_error_status_is_an_error_result_with_the_body(
    http: httpx.AsyncClient, target: HttpToolTarget, status: int
) -> None:
    async with Toolbox.open(
        [http_tool(target.url(f"/status/{status}"))], http=http, allow_private=True
    ) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result == ToolResult(ok=False, error=f"HTTP {status}: the target failed with {status}")


@pytest.mark.anyio
async def test_an_http_tool_does_not_follow_redirects(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declaration = http_tool(target.url("/redirect"))
    async with (
        httpx.AsyncClient(follow_redirects=True) as following,
        Toolbox.open([declaration], http=following, allow_private=True) as toolbox,
    ):
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result == ToolResult(ok=False, error="HTTP 307")
    assert [r.path for r in target.requests] == ["/redirect"]


@pytest.mark.anyio
async def test_an_http_tool_that_does_not_answer_in_time_is_an_error_result(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/slow?seconds=10"))],
        http=http,
        allow_private=True,
        timeout_seconds=0.5,
    ) as toolbox:
        started = time.monotonic()
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert time.monotonic() - started < 5
    assert not result.ok and "did not answer within 0.5 s" in (result.error or "")


@pytest.mark.anyio
async def test_an_answer_over_one_mebibyte_is_an_error_result(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    fits = http_tool(target.url(f"/big?bytes={MAX_RESULT_BYTES}"), name="fits")
    too_big = http_tool(target.url(f"/big?bytes={MAX_RESULT_BYTES + 1}"), name="too_big")
    async with Toolbox.open([fits, too_big], http=http, allow_private=True) as toolbox:
        small = await toolbox.call("fits", {"city": "Oslo"})
        large = await toolbox.call("too_big", {"city": "Oslo"})
    assert small.ok and len(small.content) == MAX_RESULT_BYTES
    assert large == ToolResult(
        ok=False, error=f"the answer is larger than {MAX_RESULT_BYTES} bytes"
    )


@pytest.mark.anyio
async def test_an_http_tool_that_cannot_be_reached_is_an_error_result(
    http: httpx.AsyncClient,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-here"
    async with Toolbox.open([http_tool(url)], http=http, allow_private=True) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert not result.ok and (result.error or "").startswith("ConnectError")


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_http_tool_is_refused_unless_private_targets_are_allowed(
    http: httpx.AsyncClient, target: HttpToolTarget, host: str
) -> None:
    declaration = http_tool(f"http://{host}:{target.port}/echo")
    async with Toolbox.open([declaration], http=http, allow_private=False) as toolbox:
        refused = await toolbox.call("forecast", {"city": "Oslo"})
    assert not refused.ok
    assert (refused.error or "").startswith("refused: ")
    assert "not a public address" in (refused.error or "")
    assert target.requests == []
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        allowed = await toolbox.call("forecast", {"city": "Oslo"})
    assert allowed.ok
    assert len(target.requests) == 1


@pytest.mark.anyio
async def test_the_pinned_transport_reaches_only_its_host_at_the_checked_address(
    target: HttpToolTarget,
) -> None:
    # a name that resolves nowhere, pinned to the loopback address the target listens on
    url = httpx2.URL(f"http://tools.invalid:{target.port}/")
    transport = PinnedTransport(url, ["127.0.0.1"])
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.post(url.join("/echo"), json={"city": "Oslo"})
        assert response.json() == {"received": {"city": "Oslo"}}
        with pytest.raises(httpx2.ConnectError, match="not the MCP server's host"):
            await client.post(f"http://127.0.0.1:{target.port}/echo", json={})
    assert target.requests[-1].headers["host"] == f"tools.invalid:{target.port}"
    assert len(target.requests) == 1
