"""Agent tool declarations (DESIGN §15) and the builtin tools: what is accepted, what is
refused and why."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from runyard.agents import builtins
from runyard.agents.builtins import BuiltinError
from runyard.agents.tool_declarations import ToolList, check_unique_names
from tests.agents.conftest import http_tool

pytestmark = pytest.mark.timeout(60)
tools_adapter: pydantic.TypeAdapter[list[Any]] = pydantic.TypeAdapter(ToolList)


# -- declarations -------------------------------------------------------------------------------


def test_every_kind_of_tool_declaration_is_accepted() -> None:
    tools = tools_adapter.validate_python(
        [
            http_tool("https://tools.example.com/forecast", headers={"Authorization": "Bearer t"}),
            {"type": "mcp", "url": "http://mcp.example.com/mcp", "allowed_tools": ["add"]},
            {"type": "builtin", "name": "calculator"},
            {"type": "builtin", "name": "current_time"},
        ]
    )
    assert [tool.type for tool in tools] == ["http", "mcp", "builtin", "builtin"]
    assert tools[0].model_dump()["headers"] == {"Authorization": "Bearer t"}
    assert tools[1].allowed_tools == ["add"]


@pytest.mark.parametrize(
    ("declaration", "complaint"),
    [
        (http_tool("https://x.example/t", name="has space"), "string_pattern_mismatch"),
        (http_tool("https://x.example/t", name="n" * 65), "string_pattern_mismatch"),
        (http_tool("https://x.example/t", parameters={"type": "string"}), "JSON Schema object"),
        (
            http_tool(
                "https://x.example/t",
                parameters={"type": "object", "properties": {"a": {"type": "nonsense"}}},
            ),
            "not a valid JSON Schema (at properties/a/type)",
        ),
        (http_tool("ftp://x.example/t"), "only http and https"),
        (http_tool("https://x.example/" + "a" * 2000), "at most 2000"),
        (http_tool("https://x.example/t", headers={"Host": "other"}), "set by Runyard"),
        (http_tool("https://x.example/t", headers={"bad header": "x"}), "string_pattern"),
        (http_tool("https://x.example/t", headers={"X-A": "a\r\nb"}), "string_pattern"),
        (
            http_tool("https://x.example/t", headers={f"X-{i}": "v" for i in range(51)}),
            "at most 50",
        ),
        (http_tool("https://x.example/t", description="d" * 4001), "at most 4000"),
        (http_tool("https://x.example/t", extra=1), "extra_forbidden"),
        ({"type": "mcp", "url": "http://m.example", "allowed_tools": ["t"] * 201}, "at most 200"),
        ({"type": "builtin", "name": "shell"}, "literal_error"),
        ({"type": "python", "name": "x"}, "union_tag_invalid"),
        (
            [http_tool("https://x.example/t"), http_tool("https://y.example/t")],
            "two tools are named 'forecast'",
        ),
        ([{"type": "builtin", "name": "calculator"}] * 65, "at most 64"),
    ],
)
def test_an_invalid_tool_declaration_is_refused_with_a_reason(
    declaration: dict[str, Any] | list[dict[str, Any]], complaint: str
) -> None:
    tools = declaration if isinstance(declaration, list) else [declaration]
    with pytest.raises(pydantic.ValidationError) as caught:
        tools_adapter.validate_python(tools)
    assert complaint in str(caught.value)


def test_unique_names_are_checked_on_plain_dicts_too() -> None:
    calculator = {"type": "builtin", "name": "calculator"}
    mcp = {"type": "mcp", "url": "http://m.example/mcp"}
    check_unique_names([calculator, mcp, mcp])  # MCP declarations have no name
    with pytest.raises(ValueError, match="calculator"):
        check_unique_names([calculator, calculator])


# -- builtins ------------------------------------------------------------------------------------


def test_current_time_is_now_in_utc_by_default() -> None:
    answer = builtins.run("current_time", {})
    now = datetime.fromisoformat(answer["now"])
    assert answer["timezone"] == "UTC"
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_current_time_in_a_named_zone() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    answer = builtins.current_time({"timezone": "Europe/Paris"}, now=moment)
    assert answer == {"now": "2026-07-01T14:00:00+02:00", "timezone": "Europe/Paris"}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "x" * 100, 5])
def test_current_time_refuses_an_unknown_zone(zone: Any) -> None:
    if zone == "":
        assert builtins.run("current_time", {"timezone": zone})["timezone"] == "UTC"
        return
    with pytest.raises(BuiltinError, match=r"time zone|timezone"):
        builtins.run("current_time", {"timezone": zone})


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("-3 ** 2", -9),
        ("+5 - -5", 10),
        ("2 ** -1", 0.5),
        ("1_000 * 1.5", 1500.0),
        ("sqrt(16)", 4.0),
        ("abs(-2.5)", 2.5),
        ("round(pi, 2)", 3.14),
        ("round(2.5)", 2),
        ("min(4, 2, 8)", 2),
        ("max(4, 2, 8)", 8),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("10 ** 100", 10**100),
    ],
)
def test_calculator_computes(expression: str, result: float) -> None:
    answer = builtins.run("calculator", {"expression": expression})
    assert answer == {"result": result}
    assert type(answer["result"]) is type(result)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("__import__('os')", "not strings"),
        ("__import__(os)", "unknown function __import__"),
        ("eval(1)", "unknown function eval"),
        ("os.system(1)", "only the calculator's functions"),
        ("(1).__class__", "attributes are not allowed"),
        ("x + 1", "unknown name x"),
        ("'\\d'", "not strings"),
        ("'a' * 3", "not strings"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("1 << 3", "<< is not allowed"),
        ("sqrt(x=4)", "positional arguments only"),
        ("2 ** 100000", "more than 4000 digits"),
        ("9 ** 9 ** 9 ** 9", "more than 4000 digits"),
        ("10 ** 3000 * 10 ** 3000", "more than 4000 digits"),
        ("2.0 ** 100000", "too large"),
        ("1e308 * 10", "too large"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("(-8) ** 0.5", "not a real number"),
        ("round(1, 10 ** 6)", "within"),
        ("min()", "at least one"),
        ("1 +", "not an arithmetic expression"),
        ("", "empty"),
        ("1 + " * 300 + "1", "longer than 1000"),
        ("-" * 500 + "1", "nested"),
        ("abs(" * 150 + "1" + ")" * 150, "nested"),
        ("(" * 250 + "1" + ")" * 250, "too many nested parentheses"),
    ],
)
def test_calculator_refuses(expression: str, complaint: str) -> None:
    started = time.monotonic()
    with pytest.raises(BuiltinError) as caught:
        builtins.run("calculator", {"expression": expression})
    assert complaint in str(caught.value)
    assert time.monotonic() - started < 1


def test_calculator_needs_an_expression() -> None:
    with pytest.raises(BuiltinError, match="expression must be a string"):
        builtins.run("calculator", {})
    with pytest.raises(BuiltinError, match="unexpected arguments: code"):
        builtins.run("calculator", {"expression": "1", "code": "x"})
