"""Namespaces and image names.

Names follow the distribution/reference grammar, `name[:tag][@digest]`, and are
stored exactly as given: `alpine` and `docker.io/library/alpine:latest` are
different names. containerd accepts any non-empty string; we are stricter on
purpose, and every error says which rule failed.
"""

from __future__ import annotations

import re

from imageledger.domain.digests import digest_problem
from imageledger.domain.errors import InvalidArgument, shown

DEFAULT_NAMESPACE = "default"
NAMESPACE_MAX_LENGTH = 76
# The repository's path, after its domain: distribution/reference v0.6.0 (the
# version containerd vendors) counts only that towards its 255; before v0.6.0
# the domain counted too.
NAME_MAX_LENGTH = 255
# The whole reference. distribution has no such cap; this one is imageledger's,
# so that a key (and the indexes over it) stays bounded. It refuses no name a
# registry can serve: a DNS name (253 characters at most) with a port, a
# 255-character path, a 128-character tag and a sha512 digest take 780.
REFERENCE_MAX_LENGTH = 1024

_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", re.ASCII)

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?", re.ASCII)
_PATH = re.compile(_PATH_COMPONENT, re.ASCII)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_REFERENCE_DIGEST = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII
)
# The whole grammar in one expression, for the fast path of valid names; the
# step-by-step checks below only run to say what is wrong with an invalid one.
_REFERENCE = re.compile(
    rf"(?P<repository>(?:{_DOMAIN.pattern}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::{_TAG.pattern})?(?:@(?P<digest>{_REFERENCE_DIGEST.pattern}))?",
    re.ASCII,
)


def validate_namespace(namespace: object) -> str:
    """Return `namespace` if it is a valid namespace, else raise InvalidArgument."""
    if type(namespace) is str and namespace == DEFAULT_NAMESPACE:  # most calls
        return DEFAULT_NAMESPACE
    if not isinstance(namespace, str):
        raise InvalidArgument("namespace", f"must be a string, not {_kind(namespace)}")
    if not namespace:
        raise InvalidArgument("namespace", "must not be empty")
    if len(namespace) > NAMESPACE_MAX_LENGTH:
        raise InvalidArgument(
            "namespace",
            f"{shown(namespace)} is {len(namespace)} characters, "
            f"at most {NAMESPACE_MAX_LENGTH} allowed",
        )
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidArgument(
            "namespace",
            f"{shown(namespace)} must be letters and digits, "
            "optionally joined by single '.', '_' or '-'",
        )
    return namespace


def validate_name(name: object) -> str:
    """Return `name` if it is a valid image reference, else raise InvalidArgument."""
    if not isinstance(name, str):
        raise InvalidArgument("name", f"must be a string, not {_kind(name)}")
    if len(name) > REFERENCE_MAX_LENGTH:
        raise InvalidArgument(
            "name",
            f"is {len(name)} characters, at most {REFERENCE_MAX_LENGTH} allowed",
        )
    match = _REFERENCE.fullmatch(name)
    if (
        match is not None
        and len(_path(match["repository"])) <= NAME_MAX_LENGTH
        and (match["digest"] is None or digest_problem(match["digest"]) is None)
    ):
        return name  # the common case: one match, no diagnosis needed
    problem = _reference_problem(name)
    if problem:
        raise InvalidArgument("name", problem)
    return name


def _reference_problem(reference: str) -> str | None:
    if not reference:
        return "must not be empty"
    if not reference.isascii() or not reference.isprintable() or " " in reference:
        bad = next(
            c for c in reference if not (c.isascii() and c.isprintable()) or c == " "
        )
        return f"{shown(reference)} contains {bad!r}; names are printable ASCII"
    remainder, at, digest = reference.partition("@")
    if at:
        if not _REFERENCE_DIGEST.fullmatch(digest):
            return (
                f"digest {shown(digest)} must be algorithm:hex "
                "with at least 32 hex digits"
            )
        problem = digest_problem(digest)
        if problem:
            return f"digest {problem}"
    repository, tag = _split_tag(remainder)
    if tag is not None and not _TAG.fullmatch(tag):
        return (
            f"tag {shown(tag)} must be 1 to 128 characters of letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'"
        )
    if not repository:
        return f"{shown(reference)} has no repository name"
    problem = _repository_problem(repository)
    if problem is None and len(_path(repository)) > NAME_MAX_LENGTH:
        return (
            f"repository path (the name after its domain) is "
            f"{len(_path(repository))} characters, at most {NAME_MAX_LENGTH} allowed"
        )
    return problem


def _path(repository: str) -> str:
    """`repository` without its domain, split as distribution/reference splits it:
    a first component that fits the domain grammar, followed by more, is the
    domain (so in `a/b` it is `a`), whatever it looks like."""
    first, slash, rest = repository.partition("/")
    if slash and _DOMAIN.fullmatch(first):
        return rest
    return repository


def _split_tag(remainder: str) -> tuple[str, str | None]:
    # A ':' after the last '/' starts the tag; one before it belongs to a port.
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        return remainder[:colon], remainder[colon + 1 :]
    return remainder, None


def _repository_problem(repository: str) -> str | None:
    components = repository.split("/")
    if "" in components:
        return f"{shown(repository)} has an empty path component"
    first, rest = components[0], components[1:]
    if rest and _DOMAIN.fullmatch(first) and not _PATH.fullmatch(first):
        components = rest  # a registry host such as docker.io or localhost:5000
    elif rest and not _PATH.fullmatch(first) and not _DOMAIN.fullmatch(first):
        return (
            f"{shown(first)} is neither a registry host (like registry.example:5000) "
            "nor a path component"
        )
    for component in components:
        if not _PATH.fullmatch(component):
            return (
                f"path component {shown(component)} must be lowercase letters and "
                "digits, joined by '.', '_', '__' or '-'"
            )
    return None


def _kind(value: object) -> str:
    return type(value).__name__
