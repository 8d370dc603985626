"""Request validation for the loopback fakes, against PagerDuty's published OpenAPI documents.

The documents are the unchanged copies in `../shared/reference/pagerduty-openapi/` (no licence upstream, so
they are read from there and never copied into this repository). `../shared/reference/pagerduty-openapi/README.md`
explains the approach this module follows:

- plain `jsonschema` with Draft 4 semantics (OpenAPI 3.0 schemas are a Draft 4 dialect);
- the whole document registered in a `referencing.Registry`, so that `#/components/...` refs, refs into
  `allOf` arrays and `~1`-escaped keys all resolve as full JSON pointers;
- `readOnly` not enforced (Draft 4 ignores it; enforcing it rejects every `POST /incidents`);
- the README's overrides applied to our parsed copy of the REST document:
  1. `IncidentBody` is `{"type": "incident_body", "details": <string>}` (the API only accepts string bodies);
  2. `responder_request_targets` is an array of the *wrapped* form
     `{"responder_request_target": {"id", "type": user_reference|escalation_policy_reference}}`.

Usage::

    spec = rest_spec()
    errors = spec.validate_body("/incidents", "post", {"incident": {...}})   # [] when valid
    spec.requires_header("/incidents", "post", "From")                        # True
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from typing import Any

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT4

from tests.support.shared import shared_path

EVENTS_SPEC = "reference/pagerduty-openapi/events-v2.json"
REST_SPEC = "reference/pagerduty-openapi/rest.json"

_EVENTS_URI = "urn:pagerduty:events-v2"
_REST_URI = "urn:pagerduty:rest"

# Override 1 (README "Known quirks" 1): the documented, working request sends `details` as a string.
INCIDENT_BODY_OVERRIDE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["incident_body"]},
        "details": {"type": "string"},
    },
    "required": ["type"],
}

# Override 2 (README "Known quirks" 2): the wrapped target form used by the spec's example, go-pagerduty and
# PagerDuty's MCP server. The spec's own schema is flat and has no `type: array`, so it accepts anything.
RESPONDER_REQUEST_TARGETS_OVERRIDE: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "responder_request_target": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "type": {"type": "string", "enum": ["user_reference", "escalation_policy_reference"]},
                },
                "required": ["id", "type"],
            }
        },
        "required": ["responder_request_target"],
    },
}


def escape_pointer_token(token: str) -> str:
    """Escape one JSON-pointer token (RFC 6901: `~` -> `~0`, `/` -> `~1`)."""
    return token.replace("~", "~0").replace("/", "~1")


def _resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at a local `#/a/b` pointer in `document` (full RFC 6901, so refs into arrays work)."""
    node = document
    for raw in pointer.lstrip("#").split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _format_error(error: jsonschema.ValidationError) -> str:
    """`payload.severity: 'P1' is not one of [...]`: the JSON path of the bad value, then the reason."""
    where = ".".join(str(part) for part in error.absolute_path) or "<body>"
    return f"{where}: {error.message}"


class OpenApiSpec:
    """One OpenAPI 3.0 document, with cached Draft 4 validators for its request bodies and parameters."""

    def __init__(self, document: dict[str, Any], uri: str) -> None:
        """Register `document` under `uri`; `document` must not be mutated afterwards."""
        self.document = document
        self.uri = uri
        self.registry: Registry[Any] = Registry().with_resource(uri, DRAFT4.create_resource(document))
        self._validators: dict[str, jsonschema.protocols.Validator | None] = {}
        self._lock = threading.Lock()

    def operation(self, path: str, method: str) -> dict[str, Any]:
        """The operation object of `method` on the templated `path` (e.g. `/incidents/{id}`); KeyError if absent."""
        return dict(self.document["paths"][path][method.lower()])

    def parameters(self, path: str, method: str) -> list[dict[str, Any]]:
        """Path-level and operation-level parameters of the operation, with `$ref`s resolved."""
        raw = list(self.document["paths"][path].get("parameters", [])) + list(
            self.operation(path, method).get("parameters", [])
        )
        return [_resolve_pointer(self.document, p["$ref"]) if "$ref" in p else p for p in raw]

    def requires_header(self, path: str, method: str, name: str) -> bool:
        """Whether the spec marks header `name` as required on this operation."""
        return any(
            p.get("in") == "header" and p.get("name", "").lower() == name.lower() and p.get("required")
            for p in self.parameters(path, method)
        )

    def body_validator(self, path: str, method: str) -> jsonschema.protocols.Validator | None:
        """A Draft 4 validator for the operation's `application/json` request body, or None if it has none."""
        key = f"{method.lower()} {path}"
        with self._lock:
            if key not in self._validators:
                content = self.operation(path, method).get("requestBody", {}).get("content", {})
                if "application/json" not in content:
                    self._validators[key] = None
                else:
                    pointer = "/".join(
                        [
                            "#",
                            "paths",
                            escape_pointer_token(path),
                            method.lower(),
                            "requestBody",
                            "content",
                            escape_pointer_token("application/json"),
                            "schema",
                        ]
                    )
                    # A `$ref` into the registered document rather than a copy of the sub-schema: the refs
                    # inside it are relative to the whole document and resolve through the registry.
                    self._validators[key] = jsonschema.Draft4Validator(
                        {"$ref": f"{self.uri}{pointer}"}, registry=self.registry
                    )
            return self._validators[key]

    def validate_body(self, path: str, method: str, body: Any) -> list[str]:
        """Messages for every way `body` breaks the operation's request-body schema; empty when it is valid."""
        validator = self.body_validator(path, method)
        if validator is None:
            return []
        errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        return [_format_error(e) for e in errors]

    def validate_query(self, path: str, method: str, query: Mapping[str, list[str]]) -> list[str]:
        """Check query values against the operation's parameter schemas (enums, integers, booleans).

        Unknown parameters are ignored, as PagerDuty does. Values arrive as strings, so they are coerced to the
        declared type first; a value that cannot be coerced is an error.
        """
        errors: list[str] = []
        for param in self.parameters(path, method):
            if param.get("in") != "query" or param.get("name") not in query:
                continue
            name = str(param["name"])
            schema = dict(param.get("schema", {}))
            if schema.get("type") == "array":
                schema = dict(schema.get("items", {}))
            # `uniqueItems` on a scalar schema is one of the spec's quirks (`statuses[]`); it means nothing here.
            schema.pop("uniqueItems", None)
            schema.pop("default", None)  # `sre_memories_limit` has a non-integer default: never validate it
            for raw in query[name]:
                value: Any = raw
                kind = schema.get("type")
                try:
                    if kind == "integer":
                        value = int(raw)
                    elif kind == "number":
                        value = float(raw)
                    elif kind == "boolean":
                        if raw.lower() not in ("true", "false"):
                            raise ValueError(raw)
                        value = raw.lower() == "true"
                except ValueError:
                    errors.append(f"{name}: {raw!r} is not of type {kind!r}")
                    continue
                for error in jsonschema.Draft4Validator(schema).iter_errors(value):
                    errors.append(f"{name}: {error.message}")
        return errors


def _load(relative: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(shared_path(relative).read_text(encoding="utf-8"))
    return document


@functools.cache
def events_spec() -> OpenApiSpec:
    """The Events API v2 document (no request-body overrides are needed; its quirks are in the responses)."""
    return OpenApiSpec(_load(EVENTS_SPEC), _EVENTS_URI)


@functools.cache
def rest_spec() -> OpenApiSpec:
    """The REST API v2 document with the README's overrides 1 and 2 applied (parsed once per process: 2.7 MB)."""
    document = _load(REST_SPEC)
    # Our own freshly parsed copy, so patching it in place touches nothing shared.
    document["components"]["schemas"]["IncidentBody"] = INCIDENT_BODY_OVERRIDE
    responder_schema = document["paths"]["/incidents/{id}/responder_requests"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    responder_schema["properties"]["responder_request_targets"] = RESPONDER_REQUEST_TARGETS_OVERRIDE
    return OpenApiSpec(document, _REST_URI)
