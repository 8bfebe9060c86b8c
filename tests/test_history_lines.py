"""The import's line cap: a line longer than the cap is refused while it is
read, naming it, and the long line is never held whole."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPT, descriptor
from imageledger import ImageStore
from imageledger.cli_transfer import MAX_LINE_BYTES as CLI_DEFAULT
from imageledger.errors import InvalidArgument
from imageledger.infrastructure.export_format import MAX_LINE_BYTES, capped_lines

# Writes 'a' for ever, never a newline: an import that held the line whole
# would read until killed; one that caps it stops after the cap.
ENDLESS_LINE = """
import sys
chunk = b"a" * 65536
try:
    while True:
        sys.stdout.buffer.write(chunk)
except (BrokenPipeError, OSError):
    pass
"""


def exported(n: int, tmp_path: Path) -> bytes:
    with ImageStore.open(tmp_path / "old.db") as old:
        for i in range(n):
            old.register(f"app:{i}", descriptor(i + 1), {"k": "v" * 2000})
        out = io.BytesIO()
        old.export_log(out)
    return out.getvalue()


def test_the_default_cap_is_16_mib_in_the_library_and_the_command_line() -> None:
    assert MAX_LINE_BYTES == CLI_DEFAULT == 16 * 1024 * 1024


def test_a_line_over_the_cap_is_refused_naming_it_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    data = exported(3, tmp_path)
    lines = data.splitlines(keepends=True)
    longest = max(len(line) - 1 for line in lines)
    with ImageStore.open(tmp_path / "new.db") as new:
        with pytest.raises(InvalidArgument) as raised:
            new.import_log(io.BytesIO(data), max_line_bytes=longest - 1)
        assert str(raised.value) == (
            f"invalid line 1: is longer than {longest - 1:,} bytes, the longest "
            "line an import reads (raise it with max_line_bytes, --max-line-bytes)"
        )
        assert list(new.log()) == []
        assert new.import_log(io.BytesIO(data), max_line_bytes=longest) == 3


@pytest.mark.parametrize("value", [0, 1023, 2**30 + 1, -1, True, 1.5, "16"])
def test_a_cap_that_is_not_a_byte_count_is_refused(
    tmp_path: Path, value: object
) -> None:
    with ImageStore.open(tmp_path / "new.db") as new, pytest.raises(InvalidArgument):
        new.import_log(io.BytesIO(b""), max_line_bytes=value)  # type: ignore[arg-type]


def test_capped_lines_reads_no_more_than_the_cap_of_a_long_line() -> None:
    file = io.BytesIO(b"short\n" + b"x" * 5000 + b"\nnever read\n")
    lines = capped_lines(file, 2048)
    assert next(lines) == (1, b"short\n")
    with pytest.raises(InvalidArgument, match="^invalid line 2: is longer than"):
        next(lines)
    assert file.tell() == len(b"short\n") + 2049
    # Text files (sys.stdin in text mode) count the encoded bytes too.
    assert list(capped_lines(io.StringIO("é\nab"), 2048)) == [
        (1, "é\n".encode()),
        (2, b"ab"),
    ]


def test_the_command_line_refuses_an_endless_line_without_reading_it_whole(
    tmp_path: Path,
) -> None:
    producer = subprocess.Popen(
        [sys.executable, "-c", ENDLESS_LINE], stdout=subprocess.PIPE
    )
    try:
        done = subprocess.run(
            [str(SCRIPT), "--db", str(tmp_path / "new.db"), "import", "-"],
            stdin=producer.stdout,
            capture_output=True,
            text=True,
            timeout=120,  # a regression reads for ever: it fails, not hangs
            check=False,
        )
    finally:
        producer.kill()
        producer.wait()
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "Error: invalid line 1: is longer than 16,777,216 bytes, the longest line "
        "an import reads (raise it with max_line_bytes, --max-line-bytes)\n"
    )


def test_the_command_line_takes_a_lower_or_higher_cap(tmp_path: Path) -> None:
    file = tmp_path / "history.jsonl"
    file.write_bytes(exported(2, tmp_path))
    db = str(tmp_path / "new.db")
    done = subprocess.run(
        [str(SCRIPT), "--db", db, "import", "--max-line-bytes", "1024", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("Error: invalid line 1: is longer than 1,024 bytes")
    done = subprocess.run(
        [str(SCRIPT), "--db", db, "import", "--max-line-bytes", "10", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "Error: invalid --max-line-bytes: must be a number of bytes from 1024 to "
        "1073741824\n",
    )
    done = subprocess.run(
        [str(SCRIPT), "--db", db, "import", "--max-line-bytes", "65536", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "imported 2 events\n", "")
