"""The chain's definition, byte for byte, as docs/integrity.md states it."""

from __future__ import annotations

import hashlib

import pytest

from imageledger.errors import IntegrityError
from imageledger.infrastructure.hash_chain import (
    GENESIS,
    ChainRow,
    ChainWalk,
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


def _walk_over_a_gap(*, dense: bool, tampered: bool) -> ChainWalk:
    """Events at positions 1 and 3 (2 skipped), the second's state maybe changed."""
    first = ChainRow(1, "0f" * 16, 1, "t", b"{}")
    first_link = link(GENESIS, first.canonical() or b"")
    second = ChainRow(3, "0f" * 16, 2, "t", b"{}")
    second_link = link(first_link, second.canonical() or b"")
    rows = [
        ChainRow(1, "0f" * 16, 1, "t", b"{}", first_link),
        ChainRow(3, "0f" * 16, 2, "t", b"{!}" if tampered else b"{}", second_link),
    ]
    walk = ChainWalk(
        lambda after: [r for r in rows if after is None or r.position > after],
        dense=dense,
    )
    list(walk.walk())
    return walk


def test_a_skipped_position_between_linked_events_walks_on_either_backend() -> None:
    for dense in (True, False):
        walk = _walk_over_a_gap(dense=dense, tampered=False)
        assert (walk.events, walk.position) == (2, 3)


def test_a_bad_link_after_a_gap_is_a_missing_event_only_on_dense_positions() -> None:
    with pytest.raises(IntegrityError) as dense:
        _walk_over_a_gap(dense=True, tampered=True)
    with pytest.raises(IntegrityError) as sparse:
        _walk_over_a_gap(dense=False, tampered=True)
    assert (dense.value.position, dense.value.problem) == (2, "event missing")
    assert (sparse.value.position, sparse.value.problem) == (3, "payload changed")
    assert "events between positions 1 and 3 were removed" in str(sparse.value)
