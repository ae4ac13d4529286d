"""Plugin config checked against the plugin's JSON Schema; errors name the failing path."""

from __future__ import annotations

from typing import Any

import jsonschema
import referencing.exceptions
from jsonschema.validators import validator_for

from api.errors import ApiError


def _where(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_schema(schema: dict[str, Any]) -> None:
    """422 unless ``schema`` is a valid JSON Schema (any draft it declares; 2020-12 by default)."""
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ApiError(
            422,
            "bad_config_schema",
            f"config_schema is not a valid JSON Schema at "
            f"{_where(exc.absolute_path)}: {exc.message}",
        ) from None


def check_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """422 naming the first failing path when ``config`` does not satisfy ``schema``."""
    check_schema(schema)
    validator = validator_for(schema)(schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    except referencing.exceptions.Unresolvable as exc:
        raise ApiError(
            422, "bad_config_schema", f"config_schema has a $ref that cannot be resolved: {exc}"
        ) from None
    if error is not None:
        raise ApiError(
            422,
            "config_invalid",
            f"config does not match its schema at {_where(error.absolute_path)}: {error.message}",
        )
