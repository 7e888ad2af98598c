"""Step templates: a sandboxed Jinja environment over the run input and earlier step outputs.

``{{ input.target }}`` and ``{{ steps.build.output.image }}`` in a step's ``with`` values; an
``if`` is an expression (``input.deploy and steps.tests.output.passed``), with or without
``{{ }}``. Undefined names are errors, not empty strings.
"""

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateFailure(Exception):
    pass


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every string rendered; other JSON values unchanged."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            return _env.from_string(value).render(context)
        except TemplateError as exc:
            raise TemplateFailure(f"template {value!r}: {exc}") from exc
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


def condition(expression: str, context: dict[str, Any]) -> bool:
    text = expression.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    try:
        return bool(_env.compile_expression(text)(**context))
    except TemplateError as exc:
        raise TemplateFailure(f"condition {expression!r}: {exc}") from exc
