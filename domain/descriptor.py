"""The OCI content descriptor an image name points at.

Snake_case attributes with the OCI camelCase JSON aliases, so OCI JSON
round-trips exactly: `Descriptor.from_oci(d).to_oci() == d`.
"""

from __future__ import annotations

import base64
import hashlib
import json
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
from imageledger.domain.trusted import rebuild

MAX_SIZE = 2**63 - 1
# One descriptor, as JSON, may not exceed this: a single call cannot blow up
# memory or the database (the spec suggests small embedded data anyway).
MAX_DESCRIPTOR_BYTES = 256 * 1024

_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}",
    re.ASCII,
)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:", re.ASCII)
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}

_STRICT = ConfigDict(
    frozen=True,
    extra="forbid",
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


def _reject_nulls(data: Any) -> Any:
    # OCI omits absent optional fields; an explicit null would not round-trip.
    if isinstance(data, Mapping):
        for key, value in data.items():
            if value is None:
                raise ValueError(f"{key} must be omitted rather than null")
    return data


class Platform(BaseModel):
    """The platform an index entry's manifest is for (OCI image index)."""

    model_config = _STRICT

    architecture: str = Field(min_length=1)
    os: str = Field(min_length=1)
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None
    features: list[str] | None = None

    _reject_nulls = model_validator(mode="before")(_reject_nulls)


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

    _reject_nulls = model_validator(mode="before")(_reject_nulls)

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
        for key, value in data.items():
            if not isinstance(key, str):
                raise InvalidArgument(field, f"keys must be strings, not {shown(key)}")
            if value is None:
                raise InvalidArgument(
                    f"{field}.{_location([key])}", "must be omitted rather than null"
                )
        try:
            return cls.model_validate(dict(data))
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
        return rebuild(
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
                else rebuild(
                    Platform,
                    {
                        "architecture": platform["architecture"],
                        "os": platform["os"],
                        "os_version": platform.get("os.version"),
                        "os_features": platform.get("os.features"),
                        "variant": platform.get("variant"),
                        "features": platform.get("features"),
                    },
                ),
            },
        )

    def to_oci(self) -> dict[str, Any]:
        """The descriptor as OCI JSON (camelCase keys, absent fields omitted)."""
        if self._plain():  # what model_dump gives, at a fifth of its cost
            return {
                "mediaType": self.media_type,
                "digest": self.digest,
                "size": self.size,
            }
        return self.model_dump(by_alias=True, exclude_none=True)

    def _plain(self) -> bool:
        """True when only the required fields are set."""
        return (
            self.urls is None
            and self.annotations is None
            and self.data is None
            and self.artifact_type is None
            and self.platform is None
        )


def _plain(cls: type[Descriptor], data: dict[str, Any]) -> Descriptor | None:
    """The descriptor of valid OCI JSON with only the required fields, else None.

    The same rules as the model's validators, checked directly: pydantic's
    validation was most of a write's and a rebuild's CPU time. Anything
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
    return rebuild(
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
    "extra_forbidden": "is not a descriptor field",
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
