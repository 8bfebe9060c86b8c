"""The OpenAPI 3.1 document of the HTTP service (`GET /openapi.json`).

Written out by hand, one entry per operation, so that it says what the
endpoints do rather than what a framework could infer from their signatures.
"""

from __future__ import annotations

from typing import Any

from imageledger import __version__

_ERROR = {
    "description": "An error: {error: {code, message}}",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_WHEN = "A log position (integer) or an RFC 3339 timestamp or date."

# (path, method, scope, summary, query parameters, body, success status)
_OPERATIONS: list[tuple[str, str, str | None, str, list[str], str | None, str]] = [
    ("/healthz", "get", None, "200 when the store answers.", [], None, "200"),
    ("/openapi.json", "get", None, "This document.", [], None, "200"),
    (
        "/v1/namespaces/{ns}/images",
        "get",
        "read",
        "The live images of a namespace, by name; `filter` is containerd's "
        "filter syntax, repeated filters are OR.",
        ["filter"],
        None,
        "200",
    ),
    (
        "/v1/namespaces/{ns}/images/{name}",
        "get",
        "read",
        "One image; its version is the ETag.",
        [],
        None,
        "200",
    ),
    (
        "/v1/namespaces/{ns}/images/{name}",
        "put",
        "write",
        "Register the name at a target: body {target, labels, immutable, reason}. "
        'If-None-Match: * creates only; If-Match: "N" writes only at version N.',
        [],
        "ImageWrite",
        "200",
    ),
    (
        "/v1/namespaces/{ns}/images/{name}",
        "delete",
        "write",
        'Delete the name (if_digest: only at that digest; If-Match: "N").',
        ["if_digest", "force", "reason"],
        None,
        "204",
    ),
    (
        "/v1/namespaces/{ns}/history/{name}",
        "get",
        "read",
        "Every event of the name, oldest first: {entries: [...]}.",
        [],
        None,
        "200",
    ),
    (
        "/v1/namespaces/{ns}/as-of/{when}/images",
        "get",
        "read",
        "The images of a namespace as they were at WHEN. " + _WHEN,
        ["filter"],
        None,
        "200",
    ),
    (
        "/v1/log",
        "get",
        "read",
        "The log's events as JSON lines (application/x-ndjson), streamed.",
        [
            "since",
            "until",
            "after",
            "actor",
            "name",
            "digest",
            "kind",
            "namespace",
            "limit",
        ],
        None,
        "200",
    ),
    (
        "/v1/where/{digest}",
        "get",
        "read",
        "Every interval in which a name pointed at the digest.",
        ["namespace"],
        None,
        "200",
    ),
    (
        "/v1/diff",
        "get",
        "read",
        "Names added, removed and retargeted between WHENs a and b.",
        ["a", "b", "namespace"],
        None,
        "200",
    ),
    (
        "/v1/checkpoint",
        "get",
        "read",
        "The log's last position and hash chain head.",
        [],
        None,
        "200",
    ),
    (
        "/v1/verify",
        "post",
        "read",
        "Recompute the hash chain and check the views (500 integrity if not).",
        ["checkpoint"],
        None,
        "200",
    ),
    (
        "/v1/events",
        "get",
        "read",
        "Server-sent events, one per appended event (id: its position); "
        "after (or Last-Event-ID) resumes after a position.",
        ["after", "namespace"],
        None,
        "200",
    ),
    (
        "/v1/notifications/distribution",
        "post",
        "write",
        "A Distribution registry's notification envelope; answers "
        "{recorded, duplicates, ignored, rejected}.",
        ["namespace", "registry"],
        "Envelope",
        "200",
    ),
]


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, scope, summary, query, body, status in _OPERATIONS:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("ns", "name", "when", "digest")
            if "{" + name + "}" in path
        ] + [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in query
        ]
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": parameters,
            "responses": {status: {"description": "Success"}, "default": _ERROR},
        }
        if scope is None:
            operation["security"] = []
        else:
            operation["description"] = f"Needs a token of scope {scope}."
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{body}"}
                    }
                },
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "imageledger", "version": __version__},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "ImageWrite": {
                    "type": "object",
                    "required": ["target"],
                    "properties": {
                        "target": {"type": "object", "description": "OCI descriptor"},
                        "labels": {"type": "object"},
                        "immutable": {"type": "boolean"},
                        "reason": {"type": "string"},
                    },
                },
                "Envelope": {
                    "type": "object",
                    "properties": {"events": {"type": "array"}},
                },
            },
        },
    }
