"""Prompts, versions, model configs and documents as the API shows them, and a config's
``response_format`` in the one shape model calls take."""

import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from runyard.clock import isoformat
from runyard.problems import InvalidInput, NotFound

SCHEMA_NAME = r"^[A-Za-z0-9_-]{1,64}$"


def not_found(kind: str, item_id: str, code: str) -> NotFound:
    return NotFound(f"{kind} {item_id} not found", code=code)


def prompt_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "prompt",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "description": row["description"],
        "latest_version": row["latest_version"] or None,
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def version_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "prompt_version",
        "prompt_id": row["prompt_id"],
        "version": row["version"],
        "template": row["template"],
        "variables": row["variables"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
    }


def config_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "model_config",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "model_id": row["model_id"],
        "temperature": row["temperature"],
        "max_tokens": row["max_tokens"],
        "response_format": row["response_format"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
    }


def document_resource(row: dict[str, Any]) -> dict[str, Any]:
    resource = {
        "id": row["id"],
        "object": "document",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "characters": len(row["content"]) if "content" in row else row["characters"],
        "has_ground_truth": row["ground_truth"] is not None,
        "ground_truth": row["ground_truth"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }
    if "content" in row:
        resource["content"] = row["content"]
    return resource


def response_format(value: str | dict[str, Any]) -> dict[str, Any]:
    """The config's ``response_format`` in OpenAI's shape: JSON mode or a JSON schema."""
    if value in ("json_object", {"type": "json_object"}):
        return {"type": "json_object"}
    problem = 'response_format is "json_object" or {"type": "json_schema", "json_schema": {...}}'
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        raise InvalidInput(problem, errors=[{"loc": ["body", "response_format"], "msg": problem}])
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(schema, dict):
        raise InvalidInput(
            "response_format.json_schema needs `schema`: a JSON Schema object",
            errors=[{"loc": ["body", "response_format", "json_schema", "schema"], "msg": problem}],
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(
            f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
            errors=[
                {"loc": ["body", "response_format", "json_schema", "schema"], "msg": exc.message}
            ],
        ) from exc
    name = spec.get("name", "extraction")
    if not isinstance(name, str) or re.fullmatch(SCHEMA_NAME, name) is None:
        raise InvalidInput(
            "response_format.json_schema.name is 1-64 letters, digits, _ or -",
            errors=[
                {
                    "loc": ["body", "response_format", "json_schema", "name"],
                    "msg": "1-64 letters, digits, _ or -",
                }
            ],
        )
    normal: dict[str, Any] = {"name": name, "schema": schema}
    if isinstance(spec.get("strict"), bool):
        normal["strict"] = spec["strict"]
    return {"type": "json_schema", "json_schema": normal}
