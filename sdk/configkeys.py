"""Unknown keys anywhere in a plugin config, and config Structs that would let them through.

msgspec rejects unknown keys only in Structs declared with ``forbid_unknown_fields=True``; a
nested Struct without it would take a typo (``inner.hots``) silently. So the config is walked
along its type, and ``unity plugin check`` names every Struct that lacks the flag (the JSON
Schema the registry validates with only closes those that have it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec import inspect

__all__ = ["lenient_structs", "unknown_key"]

_Object = inspect.StructType | inspect.DataclassType | inspect.TypedDictType
_Items = inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType


def unknown_key(raw: Mapping[str, Any], config_type: type[msgspec.Struct]) -> str | None:
    """The path of the first key of ``raw`` that ``config_type`` does not know, like
    ``inner.hots`` or ``targets[1].prot``; None when every key is known."""
    return _unknown(raw, inspect.type_info(config_type), "")


def _unknown(value: object, info: inspect.Type, path: str) -> str | None:
    if isinstance(info, inspect.Metadata):
        return _unknown(value, info.type, path)
    if isinstance(info, inspect.UnionType):
        member = _member(value, info)
        return None if member is None else _unknown(value, member, path)
    if isinstance(info, _Object) and isinstance(value, Mapping):
        return _unknown_in_object(value, info, path)
    if isinstance(info, inspect.DictType) and isinstance(value, Mapping):
        for key, item in value.items():
            found = _unknown(item, info.value_type, _join(path, str(key)))
            if found is not None:
                return found
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if isinstance(info, _Items):
            types = [info.item_type] * len(value)
        elif isinstance(info, inspect.TupleType):
            types = list(info.item_types)
        else:
            return None
        for index, (item, item_type) in enumerate(zip(value, types, strict=False)):
            found = _unknown(item, item_type, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _unknown_in_object(value: Mapping[Any, Any], info: _Object, path: str) -> str | None:
    known = {f.encode_name: f for f in info.fields}
    tag_field = info.tag_field if isinstance(info, inspect.StructType) else None
    for key in value:
        if key not in known and key != tag_field:
            return _join(path, str(key))
    for key, field in known.items():
        if key in value:
            found = _unknown(value[key], field.type, _join(path, key))
            if found is not None:
                return found
    return None


def _member(value: object, union: inspect.UnionType) -> inspect.Type | None:
    """The member of ``union`` that ``value`` is meant for, when that is unambiguous."""
    members = [t.type if isinstance(t, inspect.Metadata) else t for t in union.types]
    candidates: list[inspect.Type]
    if isinstance(value, Mapping):
        objects: list[inspect.Type] = [
            t for t in members if isinstance(t, _Object | inspect.DictType)
        ]
        tagged: list[inspect.Type] = [
            t
            for t in objects
            if isinstance(t, inspect.StructType)
            and t.tag_field is not None
            and value.get(t.tag_field) == t.tag
        ]
        candidates = tagged or objects
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        candidates = [t for t in members if isinstance(t, _Items | inspect.TupleType)]
    else:
        return None
    return candidates[0] if len(candidates) == 1 else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def lenient_structs(config_type: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
    """``config_type`` and every Struct reachable from it that accepts unknown fields."""
    found: list[type[msgspec.Struct]] = []
    seen: set[int] = set()

    def walk(info: inspect.Type) -> None:
        if id(info) in seen:
            return
        seen.add(id(info))
        if isinstance(info, inspect.StructType) and not info.forbid_unknown_fields:
            found.append(info.cls)
        for child in _children(info):
            walk(child)

    walk(inspect.type_info(config_type))
    return found


def _children(info: inspect.Type) -> list[inspect.Type]:
    if isinstance(info, inspect.Metadata):
        return [info.type]
    if isinstance(info, _Object | inspect.NamedTupleType):
        return [f.type for f in info.fields]
    if isinstance(info, _Items):
        return [info.item_type]
    if isinstance(info, inspect.TupleType | inspect.UnionType):
        return list(info.item_types if isinstance(info, inspect.TupleType) else info.types)
    if isinstance(info, inspect.DictType):
        return [info.key_type, info.value_type]
    return []
