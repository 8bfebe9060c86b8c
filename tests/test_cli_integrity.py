"""End to end: `checkpoint` and `verify` on the command line, on untouched,
tampered and randomly damaged store files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_damaged_store import _damage

from conftest import descriptor
from imageledger import ImageStore

SCRIPT = Path(sys.executable).with_name("imageledger")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}


def run(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--db", str(db), *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def filled(db_path: Path) -> Path:
    with ImageStore.open(db_path) as store:
        for n in range(6):
            store.register(f"app:{n}", descriptor(n), {"n": str(n)}, actor="ci")
        store.delete("app:2", actor="ops")
    return db_path


def test_checkpoint_prints_position_and_head(filled: Path) -> None:
    with ImageStore.open(filled) as store:
        expected = store.checkpoint()
    result = run(filled, "checkpoint")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{expected.position}:{expected.head}\n"
    assert json.loads(run(filled, "--json", "checkpoint").stdout) == {
        "position": 7,
        "head": expected.head,
    }


def test_verify_of_an_untouched_store_says_ok_and_proves_its_checkpoint(
    filled: Path,
) -> None:
    point = run(filled, "checkpoint").stdout.strip()
    result = run(filled, "verify", "--checkpoint", point)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"ok: 7 events, head {point}; checkpoint {point} holds; "
        "current_view and audit_index match the log\n"
    )
    report = json.loads(run(filled, "--json", "verify").stdout)
    assert report == {
        "events": 7,
        "position": 7,
        "head": point.split(":", 1)[1],
        "checkpoint": None,
        "views": ["current_view", "audit_index"],
    }


def test_verify_of_a_tampered_payload_exits_5_naming_the_position(
    filled: Path,
) -> None:
    connection = sqlite3.connect(filled)
    with connection:
        state = connection.execute(
            "SELECT state FROM stored_events WHERE rowid=4"
        ).fetchone()[0]
        connection.execute(
            "UPDATE stored_events SET state=? WHERE rowid=4",
            (state.replace(b'"ci"', b'"eve"'),),
        )
    connection.close()
    result = run(filled, "verify")
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("Error: log position 4: payload changed")
    assert result.stderr.count("\n") == 1


def test_verify_against_a_checkpoint_after_the_tail_was_cut_exits_5(
    filled: Path,
) -> None:
    point = run(filled, "checkpoint").stdout.strip()
    connection = sqlite3.connect(filled)
    with connection:
        connection.execute("DELETE FROM stored_events WHERE rowid >= 6")
        connection.execute("DELETE FROM event_chain WHERE position >= 6")
    connection.close()
    result = run(filled, "verify", "--checkpoint", point)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("Error: log position 6: event missing")


def test_a_malformed_checkpoint_exits_2(filled: Path) -> None:
    result = run(filled, "verify", "--checkpoint", "7:nothex")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Error: invalid --checkpoint: '7:nothex' is not")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_a_damaged_file_gives_one_line_and_a_documented_code_never_a_traceback(
    filled: Path, tmp_path: Path, seed: int
) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(_damage(filled.read_bytes(), seed))
    for args in (["list"], ["history", "app:1"], ["verify"], ["rebuild"]):
        result = run(damaged, *args)
        assert result.returncode in (0, 1, 3, 5), (seed, args, result.stderr)
        assert "Traceback" not in result.stderr
        if result.returncode:
            assert result.stderr.startswith("Error: ")
            assert result.stderr.count("\n") == 1, (seed, args, result.stderr)
