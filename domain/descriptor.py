"""The OCI content descriptor an image name points at.

Snake_case attributes with the OCI camelCase JSON aliases, so OCI JSON
round-trips exactly: `Descriptor.from_oci(d).to_oci() == d`.

Fields the image-spec does not define (in the descriptor and in its platform)
are kept as they are and round-trip too: the spec says readers MUST NOT error
on unknown properties, and another tool or a later version of the spec may
write them. They are pydantic's extra fields (`model_extra`). Their values
must be JSON a store can keep exactly: text that is UTF-8, integers of 64
bits, finite numbers, nesting at most `MAX_UNKNOWN_DEPTH` deep. The known
fields keep every rule the spec has for them.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imageledger.domain.digests import digest_problem
from imageledger.domain.errors import InvalidArgument, shown
from imageledger.domain.trusted import unvalidated

MAX_SIZE = 2**63 - 1
# One descriptor, as JSON, may not exceed this: a single call cannot blow up
# memory or the database (the spec suggests small embedded data anyway).
MAX_DESCRIPTOR_BYTES = 256 * 1024
# Unknown fields: JSON nested deeper than this is refused (the store's JSON
# encoder stops at 255 levels, the whole event included).
MAX_UNKNOWN_DEPTH = 64
# The integers the store's JSON encoder keeps (orjson: 64-bit signed or unsigned).
_INTEGERS = range(-(2**63), 2**64)

_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}",
    re.ASCII,
)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:", re.ASCII)
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}

_STRICT = ConfigDict(
    frozen=True,
    extra="allow",  # unknown fields are kept: see the module's docstring
    populate_by_name=True,
    strict=True,
    hide_input_in_errors=True,
    defer_build=True,  # schemas are built on first validation, not at import
)


def _media_type_problem(value: str) -> str | None:
    if not _MEDIA_TYPE.fullmatch(value):
        return (
            f"{shown(value)} is not a media type (RFC 6838 type/subtype, no parameters)"
        )
    return None


def _reject_nulls(model: type[BaseModel], data: Any) -> Any:
    # OCI omits absent optional fields; an explicit null would not round-trip.
    # An unknown field may be null: it is kept as it is.
    if isinstance(data, Mapping):
        known = _oci_names(model)
        for key, value in data.items():
            if value is None and key in known:
                raise ValueError(f"{key} must be omitted rather than null")
    return data


@functools.cache
def _oci_names(model: type[BaseModel]) -> frozenset[str]:
    """The JSON names of `model`'s own fields (the rest are unknown fields)."""
    return frozenset(field.alias or name for name, field in model.model_fields.items())


def _check_unknown(model: BaseModel) -> None:
    for key, value in (model.model_extra or {}).items():
        problem = _json_problem(value, MAX_UNKNOWN_DEPTH)
        if problem:
            raise ValueError(f"unknown field {shown(key)} {problem}")


def _json_problem(value: object, depth: int) -> str | None:
    """Why `value` is not JSON the store keeps exactly (None when it is)."""
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, int):
        return None if value in _INTEGERS else "holds an integer beyond 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "holds a number that is not finite"
    if not isinstance(value, (list, dict)):
        return f"holds a {type(value).__name__}, which is not JSON"
    if depth == 0:
        return f"is nested more than {MAX_UNKNOWN_DEPTH} deep"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return "holds an object whose keys are not all strings"
        items: Iterable[object] = value.values()
    else:
        items = value
    for item in items:
        problem = _json_problem(item, depth - 1)
        if problem:
            return problem
    return None


def _oci_json(model: BaseModel, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` (OCI names, absent ones None and left out), then `model`'s
    unknown fields, as they were given."""
    oci = {key: value for key, value in fields.items() if value is not None}
    if model.model_extra:
        oci.update(copy.deepcopy(model.model_extra))
    return oci


class Platform(BaseModel):
    """The platform an index entry's manifest is for (OCI image index)."""

    model_config = _STRICT

    architecture: str = Field(min_length=1)
    os: str = Field(min_length=1)
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None
    features: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_nulls(cls, data: Any) -> Any:
        return _reject_nulls(cls, data)

    @model_validator(mode="after")
    def _check_unknown(self) -> Platform:
        _check_unknown(self)
        return self

    def to_oci(self) -> dict[str, Any]:
        """The platform as OCI JSON (absent fields omitted)."""
        return _oci_json(
            self,
            {
                "architecture": self.architecture,
                "os": self.os,
                "os.version": self.os_version,
                "os.features": _copy(self.os_features),
                "variant": self.variant,
                "features": _copy(self.features),
            },
        )


class Descriptor(BaseModel):
    """An OCI content descriptor: media type, digest and size of a blob."""

    model_config = _STRICT

    media_type: str = Field(alias="mediaType")
    digest: str
    size: int = Field(ge=0, le=MAX_SIZE)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")
    platform: Platform | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_nulls(cls, data: Any) -> Any:
        return _reject_nulls(cls, data)

    @field_validator("media_type", "artifact_type")
    @classmethod
    def _check_media_type(cls, value: str | None) -> str | None:
        problem = value is not None and _media_type_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, value: str) -> str:
        problem = digest_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str] | None) -> list[str] | None:
        for url in value or ():
            scheme = _URI_SCHEME.match(url)
            if (
                not scheme
                or len(url) == scheme.end()
                or not url.isprintable()
                or any(c.isspace() for c in url)
                or "#" in url
            ):
                raise ValueError(f"{shown(url)} is not an absolute URI")
        return value

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and "" in value:
            raise ValueError("annotation keys must not be empty")
        return value

    @field_validator("data")
    @classmethod
    def _check_data(cls, value: str | None, info: ValidationInfo) -> str | None:
        digest, size = info.data.get("digest"), info.data.get("size")
        if value is not None and digest is not None and size is not None:
            problem = _data_problem(value, digest, size)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> Descriptor:
        if self._plain() and len(self.digest) < 1024:
            return self  # ASCII by the grammars, and far below the limit
        _check_unknown(self)
        try:
            encoded = json.dumps(self.to_oci(), ensure_ascii=False).encode()
        except UnicodeEncodeError as e:
            raise ValueError(f"contains text that is not valid UTF-8 ({e})") from None
        if len(encoded) > MAX_DESCRIPTOR_BYTES:
            raise ValueError(
                f"is {len(encoded)} bytes as JSON, "
                f"at most {MAX_DESCRIPTOR_BYTES} allowed"
            )
        return self

    @classmethod
    def from_oci(cls, data: object, *, field: str = "target") -> Descriptor:
        """Validate OCI JSON (a dict with `mediaType`, `digest`, `size`, ...).

        Raises InvalidArgument naming the field and the rule it broke.
        """
        if isinstance(data, Descriptor):
            return data
        if type(data) is dict and len(data) == 3:
            plain = _plain(cls, data)
            if plain is not None:
                return plain
        if not isinstance(data, Mapping):
            raise InvalidArgument(
                field, f"must be a descriptor object, not {type(data).__name__}"
            )
        known = _oci_names(cls)
        for key, value in data.items():
            if not isinstance(key, str):
                raise InvalidArgument(field, f"keys must be strings, not {shown(key)}")
            if value is None and key in known:
                raise InvalidArgument(
                    f"{field}.{_location([key])}", "must be omitted rather than null"
                )
        try:
            # By the OCI names only: `media_type` is an unknown field in OCI JSON.
            return cls.model_validate(dict(data), by_alias=True, by_name=False)
        except ValidationError as e:
            raise _invalid_argument(field, e) from None

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Descriptor:
        """Rebuild a descriptor this store validated before, without validating again.

        Only for OCI JSON that a store wrote itself (the read path is hot).
        """
        if len(data) == 3:  # only the required fields: the usual descriptor
            return _required_only(cls, data["mediaType"], data["digest"], data["size"])
        platform = data.get("platform")
        return unvalidated(
            cls,
            {
                "media_type": data["mediaType"],
                "digest": data["digest"],
                "size": data["size"],
                "urls": data.get("urls"),
                "annotations": data.get("annotations"),
                "data": data.get("data"),
                "artifact_type": data.get("artifactType"),
                "platform": None
                if platform is None
                else unvalidated(
                    Platform,
                    {
                        "architecture": platform["architecture"],
                        "os": platform["os"],
                        "os_version": platform.get("os.version"),
                        "os_features": platform.get("os.features"),
                        "variant": platform.get("variant"),
                        "features": platform.get("features"),
                    },
                    extra=_unknown(Platform, platform),
                ),
            },
            extra=_unknown(cls, data),
        )

    def to_oci(self) -> dict[str, Any]:
        """The descriptor as OCI JSON (camelCase keys, absent fields omitted)."""
        if self._plain():  # the usual descriptor, without model_dump's machinery
            return {
                "mediaType": self.media_type,
                "digest": self.digest,
                "size": self.size,
            }
        return _oci_json(
            self,
            {
                "mediaType": self.media_type,
                "digest": self.digest,
                "size": self.size,
                "urls": _copy(self.urls),
                "annotations": None
                if self.annotations is None
                else dict(self.annotations),
                "data": self.data,
                "artifactType": self.artifact_type,
                "platform": None if self.platform is None else self.platform.to_oci(),
            },
        )

    def _plain(self) -> bool:
        """True when only the required fields are set."""
        return (
            self.urls is None
            and self.annotations is None
            and self.data is None
            and self.artifact_type is None
            and self.platform is None
            and not self.model_extra
        )


def _copy(values: list[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def _unknown(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    known = _oci_names(model)
    return {key: value for key, value in data.items() if key not in known}


def _plain(cls: type[Descriptor], data: dict[str, Any]) -> Descriptor | None:
    """The descriptor of valid OCI JSON with only the required fields, else None.

    The same rules as the model's validators, checked directly: pydantic's
    validation dominated a write's and a rebuild's CPU time. Anything
    unusual (None then) goes through the model, which also words the error.
    """
    media_type, digest, size = (
        data.get("mediaType"),
        data.get("digest"),
        data.get("size"),
    )
    if (
        type(media_type) is str
        and type(digest) is str
        and type(size) is int
        and 0 <= size <= MAX_SIZE
        and len(digest) < 1024
        and _MEDIA_TYPE.fullmatch(media_type)
        and digest_problem(digest) is None
    ):
        return _required_only(cls, media_type, digest, size)
    return None


def _required_only(
    cls: type[Descriptor], media_type: str, digest: str, size: int
) -> Descriptor:
    """A descriptor of the three required fields, built without validation."""
    return unvalidated(
        cls,
        {
            "media_type": media_type,
            "digest": digest,
            "size": size,
            "urls": None,
            "annotations": None,
            "data": None,
            "artifact_type": None,
            "platform": None,
        },
        {"media_type", "digest", "size"},
        extra={},
    )


def _data_problem(data: str, digest: str, size: int) -> str | None:
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return "is not valid base64"
    if base64.b64encode(raw).decode("ascii") != data:
        return "is not canonical padded base64"
    if len(raw) != size:
        return f"decodes to {len(raw)} bytes but size is {size}"
    algorithm, _, encoded = digest.partition(":")
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        return f"cannot be checked against a {algorithm} digest"
    if hasher(raw).hexdigest() != encoded:
        return f"does not hash to {digest}"
    return None


_RULES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "greater_than_equal": "must not be negative",
    "less_than_equal": f"must be at most {MAX_SIZE}",
    "string_too_short": "must not be empty",
}


def _invalid_argument(field: str, error: ValidationError) -> InvalidArgument:
    first = error.errors(include_url=False, include_context=False)[0]
    location = _location(first["loc"])
    message = _RULES.get(first["type"]) or first["msg"].removeprefix("Value error, ")
    return InvalidArgument(f"{field}.{location}" if location else field, message)


def _location(parts: Iterable[object]) -> str:
    # Keys come from the caller and can be megabytes long: name them by their start.
    texts = (str(part) for part in parts)
    return ".".join(text if len(text) <= 40 else text[:40] + "..." for text in texts)
