"""Content digests (`algorithm:encoded`) as the OCI image spec defines them."""

from __future__ import annotations

import re

from imageledger.domain.errors import InvalidArgument, shown

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*", re.ASCII)
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+", re.ASCII)
_LOWER_HEX = re.compile(r"[a-f0-9]+", re.ASCII)
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}", re.ASCII)  # nearly every digest

# Registered algorithms are checked strictly; others that fit the grammar pass,
# as the OCI spec says implementations SHOULD allow.
KNOWN_ALGORITHMS: dict[str, int] = {
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "blake3": 64,
}


def digest_problem(digest: str) -> str | None:
    """Say what is wrong with `digest`, or None when it is a valid OCI digest."""
    if _SHA256.fullmatch(digest):
        return None
    algorithm, sep, encoded = digest.partition(":")
    if not sep:
        return f"{shown(digest)} is not of the form algorithm:encoded"
    if not _ALGORITHM.fullmatch(algorithm):
        return f"algorithm {shown(algorithm)} must match [a-z0-9]+([+._-][a-z0-9]+)*"
    if not _ENCODED.fullmatch(encoded):
        return f"encoded part {shown(encoded)} must match [a-zA-Z0-9=_-]+"
    length = KNOWN_ALGORITHMS.get(algorithm)
    if length is not None and (
        len(encoded) != length or not _LOWER_HEX.fullmatch(encoded)
    ):
        return f"a {algorithm} digest must be {length} lowercase hex characters"
    return None


def valid_digest(field: str, digest: object) -> str:
    """`digest` when it is a valid OCI digest string, else InvalidArgument."""
    if not isinstance(digest, str):
        raise InvalidArgument(field, "must be a string")
    problem = digest_problem(digest)
    if problem:
        raise InvalidArgument(field, problem)
    return digest
