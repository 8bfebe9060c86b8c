"""What the command line prints of text it did not write: actors, reasons and
labels with terminal controls reach no terminal raw, in tables or in JSON."""

from __future__ import annotations

import json
import unicodedata

import pytest

from conftest import Run, descriptor, ok
from imageledger.cli_context import json_line, printable, table, terminal_safe_json

CSI, OSC, RLO = "\x9b", "\x9d", "\u202e"
HOSTILE = f"ci{CSI}2J{OSC}0;owned\x07{RLO}txt.exe\x1b[31m"
SHOWN = "ci\\x9b2J\\x9d0;owned\\x07\\u202etxt.exe\\x1b[31m"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, SHOWN),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x7f\x80\x85\x9f\xa0", "\\x7f\\x80\\x85\\x9f\xa0"),  # NBSP is shown
        ("\u200b\u200e\u2066\u2069\ufeff", "\\u200b\\u200e\\u2066\\u2069\\ufeff"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\U000e0041", "\\U000e0041"),  # a tag character (Cf)
        ("\ud800", "\\ud800"),
        ("é中 ok", "é中 ok"),
    ],
)
def test_printable_escapes_every_control_and_format_character(
    text: str, shown: str
) -> None:
    assert printable(text) == shown


def test_printable_leaves_no_character_of_category_cc_or_cf_in_any_plane() -> None:
    every = "".join(
        chr(code)
        for code in range(0x110000)
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp")
    )
    assert not any(
        unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in printable(every)
    )


def test_a_table_cell_is_escaped_in_every_table() -> None:
    lines = list(table(("ACTOR", "REASON"), [[HOSTILE, "-"]]))
    assert lines[1] == f"{SHOWN}  -"


def test_json_output_escapes_c1_and_format_characters_and_parses_back() -> None:
    record = {"actor": HOSTILE, "labels": {f"k{RLO}": "\u2028é"}}
    line = json_line(record)
    assert line == (
        '{"actor":"ci\\u009b2J\\u009d0;owned\\u0007\\u202etxt.exe\\u001b[31m",'
        '"labels":{"k\\u202e":"\\u2028é"}}'
    )
    assert json.loads(line) == record
    assert terminal_safe_json('"\U000e0041"') == '"\\udb40\\udc41"'
    assert json.loads(terminal_safe_json('"\U000e0041"')) == "\U000e0041"


def test_history_log_and_get_print_hostile_actors_reasons_and_labels_escaped(
    run: Run,
) -> None:
    target = descriptor(1)
    ok(
        run(
            "register",
            "app:prod",
            "--digest",
            target["digest"],
            "--media-type",
            target["mediaType"],
            "--size",
            str(target["size"]),
            "--actor",
            HOSTILE,
            "--reason",
            HOSTILE,
            "--label",
            f"team={HOSTILE}",
        )
    )
    for command in (["history", "app:prod"], ["log"], ["get", "app:prod"]):
        out = ok(run(*command))
        assert SHOWN in out, command
        assert not any(c in out for c in (CSI, OSC, RLO, "\x1b", "\x07")), command
        out = ok(run("--json", *command))
        assert not any(c in out for c in (CSI, OSC, RLO, "\x1b", "\x07")), command
        assert "\\u009b2J\\u009d0;owned\\u0007\\u202etxt.exe\\u001b[31m" in out
