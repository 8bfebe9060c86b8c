"""Garbage on the command line: whatever the arguments or the descriptor on
stdin, only the documented exit codes come out, with one `Error:` line and no
traceback, and a refused command leaves the store file exactly as it was.

The same strategies as the library tests (garbage.py) supply the arguments;
argv cannot carry NUL bytes or more than 128 KiB in one argument, so texts are
cut to fit, and texts that are not UTF-8 arrive as the raw bytes they would be.
Each example is a real process of the installed console script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import garbage
import pytest
from evidence import file_rows
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sizes import scaled

from imageledger import ImageStore

pytestmark = [
    pytest.mark.reliability,
    # Examples can hold megabytes; hypothesis warns when it prints one.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

SCRIPT = Path(sys.executable).with_name("imageledger")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
DOCUMENTED = {0, 2, 3, 4}  # 1 (storage) and 5 (verification) are not input's fault
MAX_ARG = 100_000
SETTINGS = settings(
    max_examples=scaled(40),  # every example is a process start
    deadline=None,
    database=None,
    # Shrinking would start hundreds more processes; the failing example is
    # printed whole anyway.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def arg(value: Any) -> bytes:
    """What a shell could pass for `value`: bytes without NUL, at most MAX_ARG."""
    return _text(value).encode("utf-8", "surrogatepass").replace(b"\x00", b"")[:MAX_ARG]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (ValueError, RecursionError):  # an int of thousands of digits, deep lists
        return "9" * 5_000


def stdin_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        text = json.dumps(value, default=repr)
    except (ValueError, RecursionError):  # nan is fine; deep nesting is not
        text = "[" * 100_000
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-garbage") / "store.db"
    with ImageStore.open(path) as store:
        for name in garbage.VALID_NAMES:
            store.register(
                name,
                {
                    "mediaType": garbage.MANIFEST,
                    "digest": garbage.VALID_DIGEST,
                    "size": 7,
                },
            )
    return path


def check(
    db: Path, argv: list[bytes], stdin: bytes = b"", codes: set[int] = DOCUMENTED
) -> None:
    before = file_rows(db)
    result = subprocess.run(
        [os.fsencode(SCRIPT), b"--db", os.fsencode(db), *argv],
        input=stdin,
        env=ENV,
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode in codes, (argv[:4], err)
    assert "Traceback" not in err
    if result.returncode != 0:
        assert err.startswith("Error: ") and err.count("\n") == 1, (argv[:4], err)
        assert len(err) < 2_000, "an error line quotes input whole"
        assert result.stdout == b""
        assert file_rows(db) == before, argv[:4]


register_flags = st.fixed_dictionaries(
    {
        "name": garbage.names,
        "--digest": garbage.digests,
        "--media-type": st.one_of(st.just(garbage.MANIFEST), garbage.texts),
        "--size": st.one_of(garbage.numbers, garbage.texts),
        "--label": st.lists(garbage.texts, max_size=3),
        "--annotation": st.lists(garbage.texts, max_size=2),
        "--actor": garbage.actors,
        "--reason": garbage.reasons,
        "--if-version": st.one_of(st.none(), garbage.numbers, garbage.texts),
        "namespace": garbage.namespaces,
    }
)


@SETTINGS
@given(flags=register_flags)
def test_register_with_garbage_flags_exits_with_a_documented_code(
    store_file: Path, flags: dict[str, Any]
) -> None:
    argv = [b"-n", arg(flags["namespace"]), b"register", arg(flags["name"])]
    for option in ("--digest", "--media-type", "--size", "--actor", "--reason"):
        if flags[option] is not None:
            argv += [option.encode(), arg(flags[option])]
    for option in ("--label", "--annotation"):
        for value in flags[option]:
            argv += [option.encode(), arg(value)]
    if flags["--if-version"] is not None:
        argv += [b"--if-version", arg(flags["--if-version"])]
    check(store_file, argv)


@SETTINGS
@given(
    name=garbage.names,
    target=st.one_of(garbage.descriptors, garbage.values, st.binary(max_size=64)),
    labels=st.lists(garbage.texts, max_size=2),
)
def test_register_with_a_garbage_descriptor_on_stdin_exits_with_a_documented_code(
    store_file: Path, name: Any, target: Any, labels: list[Any]
) -> None:
    argv = [b"register", arg(name), b"--descriptor", b"-"]
    for value in labels:
        argv += [b"--label", arg(value)]
    check(store_file, argv, stdin_bytes(target))


@SETTINGS
@given(
    command=st.sampled_from(["get", "history", "delete", "list", "verify"]),
    value=st.one_of(garbage.names, garbage.digests, garbage.texts),
    namespace=garbage.namespaces,
    extra=st.one_of(st.none(), garbage.digests, garbage.texts),
)
def test_reads_and_deletes_with_garbage_exit_with_a_documented_code(
    store_file: Path, command: str, value: Any, namespace: Any, extra: Any
) -> None:
    argv = [b"-n", arg(namespace), command.encode()]
    if command == "verify":
        argv += [b"--checkpoint", arg(value)]
    elif command == "list":
        argv += [arg(value)]
    else:
        argv += [arg(value)]
        if command == "delete" and extra is not None:
            argv += [b"--if-digest", arg(extra)]
    # A well-formed checkpoint that is not this log's is a verification failure.
    check(store_file, argv, codes=DOCUMENTED | ({5} if command == "verify" else set()))
