"""Prompt templates (DESIGN §10, §15): checked when a version is made, rendered into the
messages of an extraction.

A template is Jinja in a sandbox. ``{{ document }}`` receives the document's text and the
rendered template is the user message; a template without it is the system message, and the
document's text is the user message. Other names must be declared as the version's
``variables``; a run gives their values.
"""

from typing import Any

import orjson
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runyard.llm.types import ChatMessage
from runyard.problems import InvalidInput

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
DOCUMENT = "document"
JSON_RULE = "Answer with one JSON object only: no prose and no code fence."


class RenderFailure(Exception):
    pass


def check_template(template: str, variables: list[str]) -> None:
    """400 when the template does not parse or uses a name it does not declare."""
    try:
        used = meta.find_undeclared_variables(_env.parse(template))
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"the template does not parse: {exc.message} (line {exc.lineno})",
            errors=[{"loc": ["body", "template"], "msg": str(exc.message)}],
        ) from exc
    undeclared = sorted(used - set(variables) - {DOCUMENT})
    if undeclared:
        raise InvalidInput(
            f"the template uses undeclared variables: {', '.join(undeclared)}",
            errors=[
                {"loc": ["body", "variables"], "msg": f"{name!r} is used but not declared"}
                for name in undeclared
            ],
        )


def uses_document(template: str) -> bool:
    return DOCUMENT in meta.find_undeclared_variables(_env.parse(template))


def missing_variables(declared: list[str], given: dict[str, Any]) -> list[str]:
    return [name for name in declared if name not in given]


def messages(
    template: str,
    values: dict[str, Any],
    document: str,
    json_schema: dict[str, Any] | None = None,
) -> list[ChatMessage]:
    """The conversation of one extraction: the rendered prompt, the document, and the rule
    that the answer is a JSON object (matching ``json_schema`` when there is one)."""
    rule = JSON_RULE
    if json_schema is not None:
        rule += " It must match this JSON Schema: " + orjson.dumps(json_schema).decode()
    try:
        if uses_document(template):
            rendered = _env.from_string(template).render({**values, DOCUMENT: document})
            return [
                ChatMessage(role="system", content=rule),
                ChatMessage(role="user", content=rendered),
            ]
        rendered = _env.from_string(template).render(values)
    except TemplateError as exc:
        raise RenderFailure(f"the prompt template failed to render: {exc}") from exc
    return [
        ChatMessage(role="system", content=f"{rendered}\n\n{rule}"),
        ChatMessage(role="user", content=document),
    ]
