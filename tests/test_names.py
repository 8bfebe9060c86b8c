"""Namespaces and image names: the distribution reference grammar, rule by rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import descriptor
from imageledger import ImageStore
from imageledger.domain.names import (
    _reference_problem,
    validate_name,
    validate_namespace,
)
from imageledger.errors import InvalidArgument

VALID_NAMES = [
    "alpine",
    "alpine:3.20",
    "library/alpine",
    "docker.io/library/alpine:3.20",
    "localhost/app",
    "localhost:5000/app:prod",
    "registry.example.com:443/team/app:v1.2.3",
    "REGISTRY.example/app",
    "[::1]:5000/app",
    "a/b/c/d/e",
    "my-app",
    "my--app",
    "my__app",
    "my_app.v2",
    "app:" + "t" * 128,
    "app:_tag",
    "app:V1-rc.1",
    "app@sha256:" + "a" * 64,
    "app:1.0@sha256:" + "b" * 64,
    "app@sha512:" + "c" * 128,
    "app@multihash+base58:" + "d" * 32,
    "x" * 255,
    # distribution/reference v0.6.0: only the path after the domain counts.
    "example.com/" + "a" * 255 + ":tag",
    "a/" * 128 + "a",  # the first "a" is a domain there
    "localhost:5000/" + "a" * 255,
    "a_b/" + "c" * 251,  # a_b is no domain: the path is all 255
    "d" * 700 + "/" + "a" * 255 + ":" + "t" * 67,  # 1,024 characters in all
]

INVALID_NAMES = [
    ("", "must not be empty"),
    ("Alpine", "path component 'Alpine' must be lowercase"),
    ("library/Alpine", "path component 'Alpine' must be lowercase"),
    ("app:", "tag '' must be 1 to 128 characters"),
    ("app:" + "t" * 129, "tag 'tttt"),
    ("app:.hidden", "tag '.hidden'"),
    ("app:-x", "tag '-x'"),
    ("app:a/b", "'app:a' is neither a registry host"),
    ("app@sha256:" + "a" * 63, "a sha256 digest must be 64 lowercase hex"),
    ("app@sha256:" + "A" * 64, "a sha256 digest must be 64 lowercase hex"),
    ("app@sha256:abc", "at least 32 hex digits"),
    ("app@", "digest '' must be algorithm:hex"),
    ("app@@sha256:" + "a" * 64, "digest '@sha256"),
    ("-app", "path component '-app'"),
    ("app-", "path component 'app-'"),
    ("app..x", "path component 'app..x'"),
    ("app___x", "path component 'app___x'"),
    ("a//b", "empty path component"),
    ("/app", "empty path component"),
    ("app/", "empty path component"),
    ("app name", "contains ' '"),
    ("app\x00", "contains '\\x00'"),
    ("app\n", "contains '\\n'"),
    ("äpp", "contains 'ä'"),
    ("ex_ample.com:80/app", "neither a registry host"),
    (":tag", "has no repository name"),
    (
        "x" * 256,
        "repository path (the name after its domain) is 256 characters, at most 255",
    ),
    (
        "example.com/" + "a" * 256,
        "repository path (the name after its domain) is 256 characters",
    ),
    (
        "a/" * 128 + "aa",
        "repository path (the name after its domain) is 256 characters",
    ),
    (
        "a_b/" + "c" * 252,
        "repository path (the name after its domain) is 256 characters",
    ),
    ("d" * 700 + "/" + "a" * 255 + ":" + "t" * 68, "is 1025 characters, at most 1024"),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name) == name


LONGEST = [
    "example.com/" + "a" * 255 + ":tag",
    "a/" * 128 + "a",
    "d" * 700 + "/" + "a" * 255 + ":" + "t" * 67,
]


def test_names_as_long_as_distribution_allows_are_stored(store: ImageStore) -> None:
    for n, name in enumerate(LONGEST, start=1):
        store.register(name, descriptor(n))
    assert [image.name for image in store.list()] == sorted(LONGEST)
    assert store.get(LONGEST[1]).target.to_oci() == descriptor(2)
    with pytest.raises(InvalidArgument, match="path .* is 256 characters"):
        store.register("example.com/" + "a" * 256, descriptor(9))
    assert len(list(store.list())) == 3


@pytest.mark.parametrize(("name", "rule"), INVALID_NAMES)
def test_invalid_names_name_the_rule_they_break(name: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_name(name)
    assert caught.value.field == "name"
    assert rule in caught.value.rule


@pytest.mark.parametrize("value", [None, 3, b"alpine", ["alpine"]])
def test_a_name_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="name: must be a string"):
        validate_name(value)


@pytest.mark.parametrize(
    "namespace", ["default", "k8s.io", "team-a", "a_b", "A1", "x" * 76, "moby"]
)
def test_valid_namespaces_are_accepted(namespace: str) -> None:
    assert validate_namespace(namespace) == namespace


INVALID_NAMESPACES = [
    ("", "must not be empty"),
    ("x" * 77, "is 77 characters, at most 76"),
    ("-a", "letters and digits"),
    ("a-", "letters and digits"),
    ("a..b", "letters and digits"),
    ("a/b", "letters and digits"),
    ("a b", "letters and digits"),
    ("ä", "letters and digits"),
    (None, "must be a string"),
]


@pytest.mark.parametrize(("namespace", "rule"), INVALID_NAMESPACES)
def test_invalid_namespaces_name_the_rule_they_break(
    namespace: object, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_namespace(namespace)
    assert caught.value.field == "namespace"
    assert rule in caught.value.rule


_ALPHABET = "abcAB019._-:/@[]"
_PIECES = ["sha256:" + "a" * 64, "sha256:" + "a" * 32, "docker.io/", "localhost:5000/"]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(alphabet=_ALPHABET, max_size=6), st.sampled_from(_PIECES)),
        max_size=6,
    ).map("".join)
)
def test_the_one_expression_fast_path_agrees_with_the_step_by_step_rules(
    name: str,
) -> None:
    # validate_name accepts through one regular expression; the step-by-step
    # diagnosis must accept exactly the same names.
    try:
        validate_name(name)
        fast_accepts = True
    except InvalidArgument:
        fast_accepts = False
    assert fast_accepts == (_reference_problem(name) is None)
