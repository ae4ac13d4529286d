"""JSON Schema files for every wire message, generated from the Structs.

The files live in ``schemas/json/`` and are checked in so producers in other languages can
validate against them. ``python -m schemas.jsonschema`` rewrites them; ``--check`` exits 1 when
they drift from the Structs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from unity.schemas.alerts import AlertChange, RuleFile
from unity.schemas.codec import MESSAGE_TYPES
from unity.schemas.validate import (
    MAX_HOST_LEN,
    MAX_INSTANCE_LEN,
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_PLUGIN_LEN,
    MAX_SAMPLES,
    MAX_UNIT_LEN,
    NAME_RE,
)

__all__ = ["SCHEMA_DIR", "drift", "file_name", "generate", "main", "render", "schema_of", "write"]

SCHEMA_DIR: Final = Path(__file__).parent / "json"
# Besides the wire messages: the state changes on ``unity.alerts.<rule>`` and the rule files
# ``unity alerts`` reads.
DOCUMENTED: Final = (*MESSAGE_TYPES, AlertChange, RuleFile)
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def file_name(type_: type[Any]) -> str:
    """``MetricBatch`` -> ``metric_batch.json``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type_.__name__).lower() + ".json"


def schema_of(type_: type[Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one message type, self-contained, with the limits."""
    schema: dict[str, Any] = {"$schema": DIALECT, "title": type_.__name__}
    schema.update(msgspec.json.schema(type_))
    _add_limits(schema["$defs"])
    cleaned: dict[str, Any] = _clean_descriptions(schema)
    return cleaned


def _clean_descriptions(node: Any) -> Any:
    """Dedent docstring descriptions, so the files do not depend on the msgspec version.

    msgspec 0.22 copies ``__doc__`` as written; 0.23 strips its indentation.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def _add_limits(defs: dict[str, Any]) -> None:
    """Write the limits of ``schemas.validate`` into the schema, for producers to check early.

    The decoder does not enforce them through the types, so that each broken limit gets its
    own reason code instead of a generic ``invalid``. Host, plugin and instance lengths count
    after sanitising (surrounding blanks are stripped), which a schema cannot say: it limits
    the raw string, never looser than the decoder.
    """
    name = {"pattern": f"^{NAME_RE.pattern}$", "maxLength": MAX_NAME_LEN}
    if "Sample" in defs:
        props = defs["Sample"]["properties"]
        props["name"].update(name)
        props["unit"]["maxLength"] = MAX_UNIT_LEN
        props["labels"].update(
            maxProperties=MAX_LABELS,
            propertyNames=name,
            additionalProperties={"type": "string", "maxLength": MAX_LABEL_VALUE_LEN},
        )
    if "MetricBatch" in defs:
        defs["MetricBatch"]["properties"]["samples"]["maxItems"] = MAX_SAMPLES
    if "Event" in defs:
        defs["Event"]["properties"]["kind"].update(name)
    for message in ("MetricBatch", "HealthReport", "Event"):
        if message in defs:
            props = defs[message]["properties"]
            props["host"]["maxLength"] = MAX_HOST_LEN
            props["plugin"]["maxLength"] = MAX_PLUGIN_LEN
            props["instance"]["maxLength"] = MAX_INSTANCE_LEN


def render(type_: type[Any]) -> str:
    """The exact text of the checked-in file for ``type_``."""
    return json.dumps(schema_of(type_), indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text for every wire message, alert change and the rule file."""
    return {file_name(t): render(t) for t in DOCUMENTED}


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files that are missing, stale or no longer generated."""
    expected = generate()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    stale = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text() != text
    ]
    return sorted(stale + sorted(present - set(expected)))


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Rewrite the schema files; return the names of those that changed or were removed."""
    changed = drift(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = generate()
    for name in changed:
        path = directory / name
        if name in expected:
            path.write_text(expected[name])
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.jsonschema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="output folder")
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
