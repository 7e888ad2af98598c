"""The tools Runyard runs itself (``{"type": "builtin", "name": ...}``, DESIGN §15).

``current_time`` tells the date and time (in an IANA time zone, UTC by default);
``calculator`` evaluates arithmetic. The calculator never runs Python: it walks the
expression's syntax tree, accepts only numbers, ``+ - * / // % **``, unary ``+ -``,
parentheses, the constants ``pi`` and ``e`` and a few :mod:`math` functions, and bounds the
work (expression length, nesting, the size of every intermediate number), so a model cannot
make it import, read attributes or spin on ``9**9**9**9``.

:func:`run` is what the toolbox calls; a :class:`BuiltinError` is an answer for the model.
"""

import ast
import math
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from runyard.llm.types import ToolSpec

MAX_EXPRESSION_LENGTH = 1000
MAX_DEPTH = 100
#: integers stay below Python's int → str conversion limit (4300 digits)
MAX_DIGITS = 4000
MAX_BITS = int(MAX_DIGITS * math.log2(10))
MAX_ROUND_DIGITS = 1000
MAX_ARGUMENTS = 100
MAX_TIMEZONE_LENGTH = 64


class BuiltinError(ValueError):
    """A builtin could not answer; the message is for the model."""


CURRENT_TIME = ToolSpec(
    name="current_time",
    description=(
        "The current date and time as an RFC 3339 timestamp, in UTC or in the given IANA time zone."
    ),
    parameters={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": "An IANA time zone such as `Europe/Paris`; UTC when omitted.",
            }
        },
        "additionalProperties": False,
    },
)

CALCULATOR = ToolSpec(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly: numbers, + - * / // % ** and parentheses, "
        "the constants pi and e, and the functions sqrt, abs, round, min, max, floor, ceil, "
        "exp, log (natural, or log(x, base)), log10, sin, cos and tan (radians)."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "For example `(2 + 3) * 4 ** 2 / sqrt(2)`.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
)

SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in (CURRENT_TIME, CALCULATOR)}


def run(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run the builtin ``name``; :class:`BuiltinError` when it cannot answer."""
    if name == "current_time":
        return current_time(arguments)
    if name == "calculator":
        return calculator(arguments)
    raise BuiltinError(f"no builtin tool named {name}")


def current_time(arguments: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    unknown = set(arguments) - {"timezone"}
    if unknown:
        raise BuiltinError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    name = arguments.get("timezone")
    if name is None or name == "":
        name = "UTC"
    if not isinstance(name, str):
        raise BuiltinError("timezone must be a string such as Europe/Paris")
    zone = _zone(name)
    moment = (now or datetime.now(UTC)).astimezone(zone)
    return {"now": moment.isoformat(timespec="seconds"), "timezone": name}


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        if len(name) > MAX_TIMEZONE_LENGTH:
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise BuiltinError(
            f"unknown time zone {name[:MAX_TIMEZONE_LENGTH]!r}; use an IANA name such as "
            "Europe/Paris"
        ) from exc


def calculator(arguments: dict[str, Any]) -> dict[str, Any]:
    unknown = set(arguments) - {"expression"}
    if unknown:
        raise BuiltinError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    expression = arguments.get("expression")
    if isinstance(expression, bool) or not isinstance(expression, str | int | float):
        raise BuiltinError("expression must be a string such as `2 * (3 + 4)`")
    return {"result": evaluate(str(expression))}


# -- the evaluator ------------------------------------------------------------------------------

Number = int | float


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; :class:`BuiltinError` for anything else."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise BuiltinError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    if not expression.strip():
        raise BuiltinError("the expression is empty")
    if "'" in expression or '"' in expression:
        # strings are never arithmetic, and parsing their escapes could warn
        raise BuiltinError("only numbers are allowed, not strings")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise BuiltinError(f"not an arithmetic expression: {exc.msg}") from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise BuiltinError("the expression is too deeply nested") from exc
    try:
        return _Evaluator().value(tree.body, 0)
    except ZeroDivisionError as exc:
        raise BuiltinError("division by zero") from exc
    except OverflowError as exc:
        raise BuiltinError("the result is too large") from exc
    except RecursionError as exc:
        raise BuiltinError("the expression is too deeply nested") from exc
    except (ValueError, TypeError) as exc:
        if isinstance(exc, BuiltinError):
            raise
        raise BuiltinError(str(exc) or type(exc).__name__) from exc


def _round(*args: Number) -> Number:
    if len(args) == 2:
        digits = args[1]
        if not isinstance(digits, int):
            raise BuiltinError("round's second argument must be an integer")
        if abs(digits) > MAX_ROUND_DIGITS:
            raise BuiltinError(f"round's second argument must be within ±{MAX_ROUND_DIGITS}")
        return round(args[0], digits)
    if len(args) == 1:
        return round(args[0])
    raise BuiltinError("round takes a number and, optionally, a number of digits")


def _log(*args: Number) -> float:
    if len(args) not in (1, 2):
        raise BuiltinError("log takes a number and, optionally, a base")
    return math.log(*args)


def _extreme(pick: Callable[..., Number], name: str) -> Callable[..., Number]:
    def call(*args: Number) -> Number:
        if not args:
            raise BuiltinError(f"{name} takes at least one number")
        return pick(*args) if len(args) > 1 else args[0]

    return call


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": _extreme(min, "min"),
    "max": _extreme(max, "max"),
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "log": _log,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.Not: "not",
}


class _Evaluator:
    def value(self, node: ast.expr, depth: int) -> Number:
        if depth > MAX_DEPTH:
            raise BuiltinError("the expression is too deeply nested")
        return _checked(self._value(node, depth + 1))

    def _value(self, node: ast.expr, depth: int) -> Number:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BuiltinError(f"only numbers are allowed, not {value!r}"[:200])
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            operand = self.value(node.operand, depth)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            left = self.value(node.left, depth)
            right = self.value(node.right, depth)
            if isinstance(node.op, ast.Pow):
                return _power(left, right)
            operation = _BINARY.get(type(node.op))
            if operation is None:
                raise BuiltinError(
                    f"the operator {_SYMBOLS.get(type(node.op), '?')} is not allowed"
                )
            result: Number = operation(left, right)
            return result
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise BuiltinError(f"unknown name {node.id[:50]}; only pi and e are defined")
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Attribute):
            raise BuiltinError("attributes are not allowed")
        if isinstance(node, ast.UnaryOp):
            raise BuiltinError(f"the operator {_SYMBOLS.get(type(node.op), '?')} is not allowed")
        raise BuiltinError(f"{type(node).__name__} is not allowed in an arithmetic expression")

    def _call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name):
            raise BuiltinError("only the calculator's functions can be called")
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            raise BuiltinError(
                f"unknown function {node.func.id[:50]}; the functions are " + ", ".join(FUNCTIONS)
            )
        if node.keywords:
            raise BuiltinError("functions take positional arguments only")
        if len(node.args) > MAX_ARGUMENTS:
            raise BuiltinError(f"a function takes at most {MAX_ARGUMENTS} arguments")
        arguments: list[Number] = []
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise BuiltinError("* arguments are not allowed")
            arguments.append(self.value(argument, depth))
        try:
            return function(*arguments)
        except BuiltinError:
            raise
        except TypeError as exc:
            raise BuiltinError(f"wrong arguments for {node.func.id}") from exc
        except ValueError as exc:
            raise BuiltinError(f"{node.func.id}: {exc}") from exc


def _power(base: Number, exponent: Number) -> Number:
    # an integer result has about exponent * log2|base| bits: refuse before computing it
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and (abs(base).bit_length() - 1) * exponent > MAX_BITS
    ):
        raise BuiltinError(f"the result would have more than {MAX_DIGITS} digits")
    result: Number = base**exponent
    return result


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise BuiltinError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise BuiltinError(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise BuiltinError(
            "the result is too large" if not math.isnan(value) else "the result is not a number"
        )
    if not isinstance(value, int | float):
        raise BuiltinError("the result is not a number")
    return value
