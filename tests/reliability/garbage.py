"""Garbage for every input of the store: hypothesis strategies.

Shared by the library tests (test_garbage_input.py) and meant for the command
line tests too: `texts` are what an argument can carry, `json_values` what a
descriptor or labels file can hold, `values` anything a Python caller can pass.
Every strategy mixes plain junk with near misses (a valid name with one thing
wrong), because near misses are what reach the deeper checks.

Sizes are chosen to hit the limits, not the machine: the largest string is a
few megabytes and the deepest nesting a few hundred thousand levels, far past
any limit or the interpreter's recursion limit, but cheap to build.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
VALID_DIGEST = "sha256:" + "a" * 64

# Strings that have broken parsers, encoders, shells or SQL before.
SPECIAL_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: a str, but not encodable as UTF-8
    "a\udcff",
    "\ufeffa",
    "\u202ea",
    "ci\x9b2J",  # C1 CSI: clears a terminal that takes 8-bit controls
    "ci\x9d0;title\x07",  # C1 OSC
    "a\u2028b\u2066",
    "é",
    "\uff21",  # a fullwidth A
    "\n",
    "\t",
    "..",
    "../../etc/passwd",
    "%s%n",
    "'; DROP TABLE stored_events; --",
    "a" * 256,
    "a" * 4097,
    "-",
    ":",
    "@",
    "/",
    "a:",
    "a@",
    "a//b",
    "A",
    "a:" + "t" * 129,
    "a@sha256:" + "a" * 63,
    "a@sha256:" + "A" * 64,
    "nan",
    "inf",
    "1e999",
    "0x10",
    "null",
    "{}",
    "[]",
]

_surrogates = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=4
)
# Bytes that are not UTF-8 arrive in Python as surrogate escapes (os.fsdecode,
# sys.argv); as bytes they arrive as bytes.
_non_utf8 = st.binary(min_size=1, max_size=16).map(
    lambda raw: raw.decode("utf-8", "surrogateescape")
)
huge_texts = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["a", "é", "\x00", "/", "a-", ":", "0", "a.", "\ud800"]),
    st.sampled_from([129, 300, 5_000, 70_000, 300_000, 3_000_000]),
)
small_texts = st.one_of(
    st.text(max_size=24), st.sampled_from(SPECIAL_TEXTS), _surrogates, _non_utf8
)
texts = st.one_of(small_texts, huge_texts)

numbers = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100]),
    # Too long to print (Python refuses str() of ints beyond 4300 digits).
    st.builds(pow, st.just(10), st.just(5000)),
    st.floats(),  # includes nan and both infinities
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1.0, 1e308]),
    st.booleans(),
)


def _nest(depth: int, shape: str) -> Any:
    value: Any = "x"
    for _ in range(depth):
        if shape == "list":
            value = [value]
        elif shape == "dict":
            value = {"a": value}
        else:
            value = (value,)
    return value


deep = st.builds(
    _nest,
    st.sampled_from([2, 50, 2_000, 200_000]),
    st.sampled_from(["list", "dict", "tuple"]),
)

json_values = st.recursive(
    st.none() | st.booleans() | numbers | small_texts,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(small_texts, children, max_size=4),
    max_leaves=12,
)

values = st.one_of(
    json_values,
    texts,
    deep,
    st.binary(max_size=24),
    st.builds(bytearray, st.binary(max_size=8)),
    st.frozensets(st.integers(), max_size=3),
    st.tuples(small_texts, numbers),
    st.datetimes(),
    st.builds(object),
)


def _near(valid: list[str]) -> st.SearchStrategy[str]:
    """A valid string with something inserted or cut somewhere."""
    return st.one_of(
        st.builds(
            lambda base, at, junk: base[:at] + junk + base[at:],
            st.sampled_from(valid),
            st.integers(0, 80),
            small_texts,
        ),
        st.builds(
            lambda base, at: base[:at], st.sampled_from(valid), st.integers(0, 80)
        ),
        st.builds(lambda base, tail: base + tail, st.sampled_from(valid), huge_texts),
        st.sampled_from(valid).map(str.upper),
    )


VALID_NAMES = [
    "alpine",
    "app:1",
    "docker.io/library/alpine:3.20",
    "localhost:5000/team/app@" + VALID_DIGEST,
    "registry.example/team/app:prod",
]
VALID_NAMESPACES = ["default", "team-a", "a.b_c"]

names = st.one_of(st.sampled_from(VALID_NAMES), _near(VALID_NAMES), texts, values)
namespaces = st.one_of(
    st.sampled_from(VALID_NAMESPACES), _near(VALID_NAMESPACES), texts, values
)

_DESCRIPTOR_FIELDS = [
    "mediaType",
    "digest",
    "size",
    "urls",
    "annotations",
    "data",
    "artifactType",
    "platform",
]
_valid_descriptor = st.builds(
    lambda n: {"mediaType": MANIFEST, "digest": f"sha256:{n:064x}", "size": n},
    st.integers(0, 2**63 - 1),
)
descriptors = st.one_of(
    _valid_descriptor,
    # One field replaced (or added) with junk of any kind.
    st.builds(
        lambda base, key, value: {**base, key: value},
        _valid_descriptor,
        st.one_of(st.sampled_from(_DESCRIPTOR_FIELDS), texts),
        st.one_of(values, _near([MANIFEST, VALID_DIGEST])),
    ),
    # One field missing.
    st.builds(
        lambda base, key: {k: v for k, v in base.items() if k != key},
        _valid_descriptor,
        st.sampled_from(_DESCRIPTOR_FIELDS[:3]),
    ),
    # Optional fields of the right type with junk inside, or far too big.
    st.builds(
        lambda base, annotations: {**base, "annotations": annotations},
        _valid_descriptor,
        st.one_of(
            st.dictionaries(texts, texts, max_size=3),
            st.builds(lambda v: {"k": v}, st.one_of(texts, deep, values)),
        ),
    ),
    st.builds(
        lambda base, platform: {**base, "platform": platform},
        _valid_descriptor,
        st.one_of(
            st.dictionaries(small_texts, values, max_size=3),
            st.builds(
                lambda arch, os_: {"architecture": arch, "os": os_}, values, texts
            ),
        ),
    ),
    st.builds(
        lambda base, urls: {**base, "urls": urls},
        _valid_descriptor,
        st.one_of(st.lists(texts, max_size=3), values),
    ),
    st.builds(
        lambda base, data: {**base, "data": data},
        _valid_descriptor,
        st.one_of(texts, st.binary(max_size=16).map(bytes.hex)),
    ),
    json_values,
    values,
)

labels = st.one_of(
    st.none(),
    st.dictionaries(small_texts, small_texts, max_size=4),
    st.dictionaries(texts, texts, max_size=2),
    st.dictionaries(st.one_of(small_texts, numbers, st.none()), values, max_size=2),
    st.builds(lambda n: {f"k{i}": "v" for i in range(n)}, st.sampled_from([256, 257])),
    json_values,
    values,
)

filters = st.lists(st.one_of(texts, values), max_size=3)
actors = st.one_of(st.none(), texts, values)
reasons = st.one_of(st.none(), texts, values)
expects = st.one_of(
    st.none(), st.just("absent"), st.integers(-3, 5), numbers, texts, values
)
digests = st.one_of(st.just(VALID_DIGEST), _near([VALID_DIGEST]), texts, values)
points_in_time = st.one_of(st.none(), st.datetimes(), numbers, texts, values)
lock_timeouts = st.one_of(st.none(), numbers, texts, values)


# Valid values of each argument: a call garbles one or two arguments of an
# otherwise valid call, so that the garbage reaches every check in turn.
valid_names = st.sampled_from(VALID_NAMES)
valid_namespaces = st.sampled_from(VALID_NAMESPACES)
valid_descriptors = _valid_descriptor
valid_labels = st.one_of(
    st.none(), st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8))
)
valid_actors = st.sampled_from([None, "alice", "ci@example"])
valid_reasons = st.sampled_from([None, "", "release 1.4.2"])
valid_expects = st.sampled_from([None, "absent", 0, 1, 2])


def garbled(
    valid: dict[str, st.SearchStrategy[Any]],
    junk: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments: one or two of them junk, the others valid."""

    @st.composite
    def arguments(draw: st.DrawFn) -> dict[str, Any]:
        bad = draw(st.sets(st.sampled_from(sorted(junk)), min_size=1, max_size=2))
        return {
            field: draw(junk[field] if field in bad else strategy)
            for field, strategy in valid.items()
        }

    return arguments()


# PostgreSQL URLs whose passwords (every piece after "pw-") a message must
# never show, however malformed: unencoded '/', '#', '?', '@', '%', space.
HOSTILE_URLS = [
    "postgresql://ci:pw-abc/def@db.example:5432/images",
    "postgresql://postgres:pw-Sup3r#Secret@db.example:5432/images",
    "postgresql://postgres:pw-50%offSecret@db.example/images",
    "postgresql://ci:pw-q?x@db.example/images",
    "postgresql://ci:pw-a@b@db.example/images",
    "postgresql://ci:pw-nohost@/images",
    "postgresql:/ci:pw-oneslash@db/images",
    "postgresql://ci@127.0.0.1:1/images?password=pw-query",
]
