"""The chain's definition, byte for byte, as the README states it."""

from __future__ import annotations

import hashlib

from imageledger.infrastructure.hash_chain import (
    GENESIS,
    canonical_bytes,
    head_text,
    link,
)


def test_canonical_bytes_are_four_length_prefixed_fields() -> None:
    canonical = canonical_bytes("0f" * 16, 12, "imageledger:Image.Deleted", b'{"a":1}')
    assert canonical == (
        b"\x00\x00\x00\x00\x00\x00\x00\x20" + b"0f" * 16
        + b"\x00\x00\x00\x00\x00\x00\x00\x02" + b"12"
        + b"\x00\x00\x00\x00\x00\x00\x00\x19" + b"imageledger:Image.Deleted"
        + b"\x00\x00\x00\x00\x00\x00\x00\x07" + b'{"a":1}'
    )  # fmt: skip


def test_moving_bytes_between_fields_changes_the_canonical_bytes() -> None:
    # Without the length prefixes these two would be the same concatenation.
    assert canonical_bytes("ab", 1, "t", b"x") != canonical_bytes("a", 1, "bt", b"x")
    assert canonical_bytes("ab", 1, "t", b"x") != canonical_bytes("ab", 1, "", b"tx")


def test_a_link_is_sha256_of_the_previous_link_and_the_canonical_bytes() -> None:
    canonical = canonical_bytes("0f" * 16, 1, "t", b"{}")
    first = link(GENESIS, canonical)
    assert bytes(32) == GENESIS
    assert first == hashlib.sha256(bytes(32) + canonical).digest()
    assert link(first, canonical) != first
    assert head_text(first) == "sha256:" + first.hex()
