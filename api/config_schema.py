"""Plugin config checked against the plugin's JSON Schema; errors name the failing path.

A schema is checked when it is registered or patched, so that one that cannot be used fails
there (422) and not later at a config PUT: it must be a valid JSON Schema, and validating a
few trivial documents against it must finish, which catches unresolvable ``$ref``s and ones
that refer to themselves without end (``{"$ref": "#"}``). A loop that only a particular
config reaches still ends as a 422 when that config is checked.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import referencing.exceptions
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from unity.api.errors import ApiError

# Documents of every JSON type, empty: enough to walk a schema's top-level references.
_PROBES: tuple[dict[str, Any] | list[Any] | int | str | None, ...] = (None, {}, [], 0, "")


def _where(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _bad_schema(message: str) -> ApiError:
    return ApiError(422, "bad_config_schema", f"config_schema {message}")


def _validator(schema: dict[str, Any]) -> Validator:
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _bad_schema(
            f"is not a valid JSON Schema at {_where(exc.absolute_path)}: {exc.message}"
        ) from None
    except RecursionError:
        raise _bad_schema("is nested too deeply to check") from None
    validator: Validator = cls(schema)
    return validator


def _first_error(
    validator: Validator, config: dict[str, Any] | list[Any] | int | str | None
) -> jsonschema.ValidationError | None:
    try:
        error: jsonschema.ValidationError | None = jsonschema.exceptions.best_match(
            validator.iter_errors(config)
        )
        return error
    except referencing.exceptions.Unresolvable as exc:
        raise _bad_schema(f"has a $ref that cannot be resolved: {exc}") from None
    except RecursionError:
        raise _bad_schema("refers to itself without end (a $ref loop)") from None


def check_schema(schema: dict[str, Any]) -> None:
    """422 unless ``schema`` is a usable JSON Schema (any draft it declares; 2020-12 by
    default)."""
    validator = _validator(schema)
    for probe in _PROBES:
        _first_error(validator, probe)


def check_config(config: dict[str, Any], schema: dict[str, Any], what: str = "config") -> None:
    """422 naming the first failing path when ``config`` does not satisfy ``schema``."""
    error = _first_error(_validator(schema), config)
    if error is not None:
        raise ApiError(
            422,
            "config_invalid",
            f"{what} does not match its schema at {_where(error.absolute_path)}: {error.message}",
        )
