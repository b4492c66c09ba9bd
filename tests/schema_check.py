"""A JSON Schema (draft 2020-12) check of the keywords docs/stack-config.schema.json uses, for the
tests (the jsonschema package is no dependency of ours). A keyword it does not implement is an
error, so a schema it cannot fully check never passes a value."""

from __future__ import annotations

import re
from typing import Any

# Keywords that only annotate (an editor shows them; nothing to check).
ANNOTATIONS = frozenset({"$schema", "$defs", "title", "description", "default", "format", "patternErrorMessage"})
CHECKED = frozenset({"$ref", "type", "enum", "const", "anyOf", "minLength", "maxLength", "pattern", "minimum",
                     "maximum", "items", "minItems", "maxItems", "properties", "patternProperties",
                     "additionalProperties", "required", "propertyNames"})
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def errors(schema: dict[str, Any] | bool, value: Any, root: dict[str, Any] | None = None, at: str = "") -> list[str]:
    """Where `value` breaks `schema`, one line each (empty: it conforms)."""
    if isinstance(schema, bool):
        return [] if schema else [f"{at or '/'}: not allowed"]
    root = schema if root is None else root
    unknown = set(schema) - ANNOTATIONS - CHECKED
    if unknown:
        raise ValueError(f"{at or '/'}: keywords this check does not implement: {sorted(unknown)}")
    where = at or "/"
    if "$ref" in schema:
        found = _resolve(root, schema["$ref"])
        if errs := errors(found, value, root, at):
            return errs
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[k](value) for k in kinds):
            return [f"{where}: {value!r} is not of type {' or '.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "anyOf" in schema:
        tried = [errors(branch, value, root, at) for branch in schema["anyOf"]]
        if all(tried):
            return [f"{where}: matches none of anyOf: " + " | ".join(e[0] for e in tried)]
    out: list[str] = []
    if isinstance(value, str):
        out += _string(schema, value, where)
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: {value} is above {schema['maximum']}")
    if isinstance(value, list):
        out += _array(schema, value, root, at)
    if isinstance(value, dict):
        out += _object(schema, value, root, at)
    return out


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"{ref}: only references inside the schema are implemented")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _string(schema: dict[str, Any], value: str, where: str) -> list[str]:
    out = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append(f"{where}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        out.append(f"{where}: longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return out


def _array(schema: dict[str, Any], value: list, root: dict[str, Any], at: str) -> list[str]:
    out = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        out.append(f"{at or '/'}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        out.append(f"{at or '/'}: more than {schema['maxItems']} items")
    if "items" in schema:
        for i, item in enumerate(value):
            out += errors(schema["items"], item, root, f"{at}[{i}]")
    return out


def _object(schema: dict[str, Any], value: dict, root: dict[str, Any], at: str) -> list[str]:
    out = [f"{at or '/'}: {key!r} is required" for key in schema.get("required", []) if key not in value]
    for key, item in value.items():
        path = f"{at}.{key}" if at else str(key)
        if "propertyNames" in schema:
            out += errors(schema["propertyNames"], key, root, f"{path} (the key)")
        matched = False
        if key in schema.get("properties", {}):
            matched = True
            out += errors(schema["properties"][key], item, root, path)
        for pattern, sub in schema.get("patternProperties", {}).items():
            if re.search(pattern, key):
                matched = True
                out += errors(sub, item, root, path)
        if not matched and "additionalProperties" in schema:
            out += errors(schema["additionalProperties"], item, root, path)
    return out
