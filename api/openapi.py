"""OpenAPI 3.1, generated from the operations and the ``schemas.api`` Structs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from unity.api.operation import INT64_MAX, Operation, Param
from unity.schemas.api import ErrorBody

REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "bad request (parameter, selector, body)",
    "401": "missing or invalid token",
    "403": "token lacks the scope",
    "404": "not found",
    "409": "conflict",
    "413": "body too large",
    "422": "valid JSON that breaks a rule (schema, points cap)",
    "503": "a dependency is unavailable",
}


def _content(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": schema}}


def _stated(p: Param) -> dict[str, Any]:
    """A parameter's schema with the limits every path id has (bigint keys)."""
    if p.where == "path" and p.schema.get("type") == "integer":
        return {"maximum": INT64_MAX} | p.schema
    return p.schema


def document(operations: Sequence[tuple[str, Operation]], version: str) -> dict[str, Any]:
    """The OpenAPI document for ``(prefix, operation)`` pairs."""
    types: list[Any] = [ErrorBody]
    for _, op in operations:
        types += [t for t in (op.body, op.response) if t is not None]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(types, refs, strict=True))
    error = {"description": "", "content": _content("application/json", schema_of[ErrorBody])}
    paths: dict[str, dict[str, Any]] = {}
    for prefix, op in operations:
        entry: dict[str, Any] = {
            "operationId": op.method.lower() + re.sub(r"[/{}]+", "_", op.template).rstrip("_"),
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": _stated(p),
                }
                for p in op.params
            ],
            "responses": {},
        }
        if op.scope is not None:
            entry["security"] = [{"bearer": []}]
            entry["description"] = f"Needs a token with the {op.scope!r} scope" + (
                " (unless reads are opened in the settings)." if op.scope == "read" else "."
            )
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": _content("application/json", schema_of[op.body]),
            }
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = _content(op.media_type, schema_of[op.response])
        elif op.media_type != "application/json":
            ok["content"] = _content(op.media_type, {"type": "string"})
        entry["responses"][str(op.status)] = ok
        for also, meaning in op.also:
            entry["responses"][str(also)] = ok | {"description": meaning}
        for status, text in _ERRORS.items():
            entry["responses"][status] = error | {"description": text}
        paths.setdefault(prefix + op.template, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Unity API",
            "version": version,
            "description": "Telemetry for homelabs: latest values, history, live stream, "
            'plugin registry. Errors are {"error": {"code", "message"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
