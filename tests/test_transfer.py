"""Export and import of the whole log: a store moved between SQLite and
PostgreSQL (both ways, and to its own kind) keeps every event exactly: the
history of every name with its positions, the hash chain and its head, the
views. Bad files are refused naming the line, and nothing is written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    INDEX,
    SCRIPT,
    descriptor,
    digest,
    on_a_terminal,
    split_schema,
    with_schema,
)
from imageledger import ImageStore
from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import Conflict, InvalidArgument
from imageledger.infrastructure import export_format

CHAIN_DIFFERS = (
    "chain: hash differs: the export was altered or made by another encoding"
)
NOT_EMPTY = "the store already has events: import only into a new, empty store"

RICH = {
    "mediaType": INDEX,
    "digest": digest(7),
    "size": 1733,
    "annotations": {"org.opencontainers.image.ref.name": "1.4.2", "b": ""},
    "urls": ["https://mirror.example/blobs/7"],
    "artifactType": "application/vnd.example.sbom+json",
    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}


@pytest.fixture
def make_location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], str]]:
    """Makes the location of a new, empty store of the backend asked for."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return str(tmp_path / f"store-{uuid.uuid4().hex[:8]}.db")
        server: str = request.getfixturevalue("postgres_server")
        schemas.append(f"t_{uuid.uuid4().hex[:16]}")
        return with_schema(server, schemas[-1])

    yield make
    if schemas:
        import psycopg

        server = request.getfixturevalue("postgres_server")
        with psycopg.connect(server, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def fill(store: ImageStore) -> set[tuple[str, str]]:
    """A history with every kind of event; returns the (namespace, name)s in it."""
    store.register("app:prod", descriptor(1), {"team": "web"}, actor="ci", reason="r1")
    store.register("app:prod", RICH, {"team": "web"}, actor="alice", reason="é ✓")
    store.register("lib:1", descriptor(2), namespace="build", actor="ci")
    store.delete("app:prod", actor="bob", reason="retired")
    store.register_many(
        [("b:1", descriptor(3)), ("a:1", descriptor(4), {"x": "1"})], actor="batch"
    )
    store.register("app:prod", descriptor(5), actor="carol")  # back after a delete
    store.delete("lib:1", namespace="build", actor="ci")
    return {
        ("default", "app:prod"),
        ("build", "lib:1"),
        ("default", "b:1"),
        ("default", "a:1"),
    }


def exported(store: ImageStore) -> bytes:
    out = io.BytesIO()
    store.export_log(out)
    return out.getvalue()


def histories(store: ImageStore, names: set[tuple[str, str]]) -> dict[Any, Any]:
    return {(ns, n): store.history(n, namespace=ns) for ns, n in sorted(names)}


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("sqlite", "sqlite"),
        ("sqlite", "postgres"),
        ("postgres", "sqlite"),
        ("postgres", "postgres"),
    ],
)
def test_export_then_import_reproduces_the_history_exactly(
    make_location: Callable[[str], str], source: str, target: str
) -> None:
    with ImageStore.open(make_location(source)) as old:
        names = fill(old)
        before = histories(old, names)
        checkpoint = old.checkpoint()
        data = exported(old)
        state = old.replay()
    with ImageStore.open(make_location(target)) as new:
        assert new.import_log(io.BytesIO(data)) == checkpoint.position == 8
        assert histories(new, names) == before  # positions, timestamps, actors
        assert new.checkpoint() == checkpoint
        report = new.verify(checkpoint)
        assert (report.events, report.position) == (8, 8)
        assert new.replay() == state
        assert list(new.list()) == [
            state[("default", n)] for n in ("a:1", "app:prod", "b:1")
        ]
        assert exported(new) == data


def test_export_writes_one_line_per_event_with_its_fields_in_order(
    store: ImageStore,
) -> None:
    store.register("app:prod", RICH, {"team": "web"}, actor="ci", reason="r1")
    store.delete("app:prod", actor="bob")
    head = store.checkpoint().head
    first, second = store.history("app:prod")
    lines = exported(store).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "position": 1,
            "namespace": "default",
            "name": "app:prod",
            "version": 1,
            "kind": "registered",
            "target": RICH,
            "labels": {"team": "web"},
            "timestamp": first.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": "ci",
            "reason": "r1",
            "chain": json.loads(lines[0])["chain"],
        },
        {
            "position": 2,
            "namespace": "default",
            "name": "app:prod",
            "version": 2,
            "kind": "deleted",
            "target": None,
            "labels": None,
            "timestamp": second.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": "bob",
            "reason": None,
            "chain": head,
        },
    ]
    assert list(json.loads(lines[0])) == [
        "position",
        "namespace",
        "name",
        "version",
        "kind",
        "target",
        "labels",
        "timestamp",
        "actor",
        "reason",
        "chain",
    ]


def test_export_to_a_text_file_writes_the_same_lines_and_they_import(
    store: ImageStore, make_location: Callable[[str], str]
) -> None:
    fill(store)
    text = io.StringIO()
    assert store.export_log(text) == 8
    assert text.getvalue().encode() == exported(store)
    with ImageStore.open(make_location("sqlite")) as new:
        assert new.import_log(io.StringIO(text.getvalue())) == 8
        assert exported(new) == exported(store)


def test_an_empty_store_exports_nothing_and_an_empty_file_imports_nothing(
    store: ImageStore, log_rows: Any
) -> None:
    assert exported(store) == b""
    assert store.import_log(io.BytesIO(b"")) == 0
    assert log_rows() == []


def test_import_into_a_store_with_events_is_refused_and_writes_nothing(
    make_location: Callable[[str], str], location: str, log_rows: Any
) -> None:
    with ImageStore.open(make_location("sqlite")) as old:
        fill(old)
        data = exported(old)
    with ImageStore.open(location) as store:
        store.register("mine:1", descriptor(9), actor="me")
        rows = log_rows()
        with pytest.raises(Conflict) as refused:
            store.import_log(io.BytesIO(data))
        assert str(refused.value) == NOT_EMPTY
        assert log_rows() == rows
        with pytest.raises(Conflict):
            store.import_log(io.BytesIO(b""))


def test_the_write_itself_refuses_a_log_that_filled_since_the_check(
    store: ImageStore, make_location: Callable[[str], str], log_rows: Any
) -> None:
    # What a second writer racing an import leaves: events appended between
    # the import's first look at the log and its write.
    with ImageStore.open(make_location("sqlite")) as other:
        other.register("theirs:1", descriptor(8), actor="them")
        events = [event for _, event in other._log.read()]
    store.register("mine:1", descriptor(9), actor="me")
    rows = log_rows()
    with pytest.raises(Conflict) as refused:
        store._log.append_to_empty([(store._log.to_stored(events), events)])
    assert str(refused.value) == NOT_EMPTY
    assert log_rows() == rows
    assert store.verify().events == 1


def with_line(
    data: bytes, number: int, change: Callable[[dict[str, Any]], Any]
) -> bytes:
    lines = data.decode().splitlines()
    record = json.loads(lines[number - 1])
    replaced = change(record)
    lines[number - 1] = (
        replaced
        if isinstance(replaced, str)
        else json.dumps(record, ensure_ascii=False)
    )
    return ("\n".join(lines) + "\n").encode()


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def drop(record: dict[str, Any]) -> None:
        del record[key]

    return drop


# (line, change, the error message): lines of the file `fill` exports.
BAD_LINES = [
    (2, lambda r: "{not json", None),
    (1, lambda r: "[1, 2]", "invalid line 1: is not a JSON object"),
    (3, lambda r: "", None),
    (1, _drop("actor"), "invalid line 1: actor: is missing"),
    (
        1,
        _set("kind", "moved"),
        "invalid line 1: kind: must be 'registered' or 'deleted', not \"moved\"",
    ),
    (
        1,
        _set("colour", "red"),
        "invalid line 1: colour: is not a field of a registered event",
    ),
    (
        2,
        _set("position", 1),
        "invalid line 2: position: 1 does not follow position 1: positions must increase",
    ),
    (
        2,
        _set("position", True),
        "invalid line 2: position: must be a positive integer, not true",
    ),
    (
        2,
        _set("version", 3),
        "invalid line 2: version: 3 is not the next version of 'app:prod' in namespace 'default': expected 2",
    ),
    (
        1,
        _set("kind", "deleted"),
        "invalid line 1: target: must be null for a deleted event",
    ),
    (3, _set("namespace", "bad ns"), None),
    (3, _set("name", "UPPER:case"), None),
    (1, _set("target", {"mediaType": "x/y", "digest": "sha256:12", "size": 1}), None),
    (
        1,
        _set("labels", {"k": 1}),
        "invalid line 1: labels['k']: keys and values must be strings",
    ),
    (1, _set("actor", ""), "invalid line 1: actor: must not be empty"),
    (1, _set("reason", 7), "invalid line 1: reason: must be a string, not int"),
    (
        2,
        _set("timestamp", "2026-01-01 10:00:00"),
        'invalid line 2: timestamp: must be RFC 3339 with an offset, as 2026-11-28T09:30:00.000000Z, not "2026-01-01 10:00:00"',
    ),
    (
        2,
        _set("timestamp", "2000-01-01T00:00:00.000000Z"),
        "invalid line 2: timestamp: is earlier than the previous event of 'app:prod' in namespace 'default'",
    ),
    (
        1,
        _set("chain", "sha256:abc"),
        "invalid line 1: chain: must be sha256: and 64 lowercase hex digits",
    ),
    (2, _set("reason", "rewritten"), f"invalid line 2: {CHAIN_DIFFERS}"),
    (4, _set("chain", "sha256:" + "0" * 64), f"invalid line 4: {CHAIN_DIFFERS}"),
]


@pytest.mark.parametrize(("number", "change", "message"), BAD_LINES)
def test_a_bad_line_is_refused_naming_it_and_nothing_is_written(
    store: ImageStore,
    make_location: Callable[[str], str],
    log_rows: Any,
    number: int,
    change: Callable[[dict[str, Any]], Any],
    message: str | None,
) -> None:
    with ImageStore.open(make_location("sqlite")) as old:
        fill(old)
        data = with_line(exported(old), number, change)
    with pytest.raises(InvalidArgument) as refused:
        store.import_log(io.BytesIO(data))
    if message is None:
        assert str(refused.value).startswith(f"invalid line {number}")
    else:
        assert str(refused.value) == message
    assert log_rows() == []


def test_a_delete_of_a_name_that_is_not_live_is_refused(store: ImageStore) -> None:
    lines = [
        {
            "position": 1,
            "namespace": "default",
            "name": "ghost:1",
            "version": 1,
            "kind": "deleted",
            "target": None,
            "labels": None,
            "timestamp": "2026-01-01T00:00:00.000000Z",
            "actor": "ci",
            "reason": None,
        }
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with pytest.raises(InvalidArgument) as refused:
        store.import_log(io.BytesIO(data))
    assert str(refused.value) == (
        "invalid line 1: kind: 'ghost:1' in namespace 'default' is deleted but "
        "does not exist at that point"
    )


def test_lines_without_chain_import_and_make_the_same_chain(
    make_location: Callable[[str], str], store: ImageStore
) -> None:
    with ImageStore.open(make_location("sqlite")) as old:
        fill(old)
        checkpoint = old.checkpoint()
        data = exported(old)
    for number in range(1, 9):
        data = with_line(data, number, _drop("chain"))
    assert b'"chain"' not in data
    assert store.import_log(io.BytesIO(data)) == 8
    assert store.checkpoint() == checkpoint


def test_a_gap_in_postgresql_positions_is_closed_and_the_head_still_matches(
    make_location: Callable[[str], str],
) -> None:
    source = make_location("postgres")
    with ImageStore.open(source) as old:
        old.register("a:1", descriptor(1), actor="ci")
        import psycopg

        server, schema = split_schema(source)
        with psycopg.connect(server, autocommit=True) as connection:
            # What a rolled-back write leaves: a used-up sequence number.
            connection.execute(
                f"SELECT nextval('{schema}.stored_events_notification_id_seq')"
            )
        old.register("b:1", descriptor(2), actor="ci")
        assert [e.position for e in old.history("b:1")] == [3]
        head = old.checkpoint().head
        data = exported(old)
    with ImageStore.open(make_location("sqlite")) as new:
        assert new.import_log(io.BytesIO(data)) == 2
        assert [e.position for e in new.history("b:1")] == [2]
        assert (new.checkpoint().position, new.checkpoint().head) == (2, head)
        new.verify()


# The command line.


def script(
    location: str, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    return subprocess.run(
        [str(SCRIPT), "--db", location, *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_cli_export_to_stdout_prints_the_lines_and_nothing_else(
    store: ImageStore, location: str
) -> None:
    fill(store)
    done = script(location, "export")
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", exported(store))
    assert script(location, "export", "-").stdout == exported(store)


def test_cli_export_to_a_file_then_import_moves_the_store(
    location: str, tmp_path: Path, make_location: Callable[[str], str]
) -> None:
    with ImageStore.open(location) as store:
        names = fill(store)
        before = histories(store, names)
        checkpoint = store.checkpoint()
    file = tmp_path / "history.jsonl"
    done = script(location, "export", str(file))
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode() == f"exported 8 events to {file}\n"
    target = make_location("sqlite")
    done = script(target, "import", str(file))
    assert (done.returncode, done.stderr, done.stdout) == (
        0,
        b"",
        b"imported 8 events\n",
    )
    with ImageStore.open(target) as new:
        assert histories(new, names) == before
        assert new.checkpoint() == checkpoint
    done = script(target, "verify")
    assert done.returncode == 0
    assert done.stdout.decode().startswith(f"ok: 8 events, head {checkpoint}")


def test_cli_import_reads_stdin_and_prints_json(
    location: str, make_location: Callable[[str], str]
) -> None:
    with ImageStore.open(make_location("sqlite")) as old:
        fill(old)
        data = exported(old)
    done = script(location, "--json", "import", "-", stdin=data)
    assert (done.returncode, done.stderr) == (0, b"")
    assert json.loads(done.stdout) == {"events": 8}
    assert script(location, "export").stdout == data


def test_cli_import_into_a_store_with_events_exits_4(
    location: str, tmp_path: Path, log_rows: Any
) -> None:
    with ImageStore.open(location) as store:
        fill(store)
    file = tmp_path / "history.jsonl"
    assert script(location, "export", str(file)).returncode == 0
    rows = log_rows()
    done = script(location, "import", str(file))
    assert (done.returncode, done.stdout) == (4, b"")
    assert done.stderr.decode() == f"Error: {NOT_EMPTY}\n"
    assert log_rows() == rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: "garbage",
            "Error: invalid line 2: is not JSON (an error at column 1)\n",
        ),
        (_set("reason", "rewritten"), f"Error: invalid line 2: {CHAIN_DIFFERS}\n"),
        (
            _set("version", 9),
            "Error: invalid line 2: version: 9 is not the next version of 'app:prod' in namespace 'default': expected 2\n",
        ),
    ],
)
def test_cli_import_of_a_bad_line_exits_2_naming_it(
    location: str,
    tmp_path: Path,
    make_location: Callable[[str], str],
    log_rows: Any,
    change: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    with ImageStore.open(make_location("sqlite")) as old:
        fill(old)
        data = with_line(exported(old), 2, change)
    file = tmp_path / "history.jsonl"
    file.write_bytes(data)
    done = script(location, "import", str(file))
    assert (done.returncode, done.stdout, done.stderr.decode()) == (2, b"", message)
    assert log_rows() == []


def test_cli_import_of_a_missing_file_exits_1(location: str, tmp_path: Path) -> None:
    done = script(location, "import", str(tmp_path / "nope.jsonl"))
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == (
        f"Error: Could not open file {str(tmp_path / 'nope.jsonl')!r}: "
        "No such file or directory\n"
    )


def test_cli_export_to_an_unwritable_place_exits_1_and_leaves_no_file(
    location: str, tmp_path: Path
) -> None:
    target = tmp_path / "missing-dir" / "history.jsonl"
    done = script(location, "export", str(target))
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode().startswith(
        f"Error: Could not open file {str(target)!r}"
    )
    assert not target.exists()


def test_cli_export_and_import_draw_progress_on_a_terminal_only(
    location: str, tmp_path: Path, make_location: Callable[[str], str]
) -> None:
    with ImageStore.open(location) as store:
        fill(store)
    file = tmp_path / "history.jsonl"
    code, out, drawn = on_a_terminal(location, "export", str(file))
    assert (code, out) == (0, f"exported 8 events to {file}\n".encode())
    assert drawn == b"\rexporting [" + b"#" * 30 + b"] 100%  8/8 events\r\n"
    target = make_location("sqlite")
    code, out, drawn = on_a_terminal(target, "import", str(file))
    assert (code, out) == (0, b"imported 8 events\n")
    assert drawn == b"\rimporting [" + b"#" * 30 + b"] 100%  8/8 events\r\n"


@dataclass(frozen=True)
class _Flagged(ImageName.Registered):
    """A registration with a flag, as an event class may gain one later."""

    immutable: bool = False


def test_a_field_an_event_class_gains_later_passes_through_the_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = _Flagged(
        originator_id=image_id("default", "a:1"),
        originator_version=1,
        timestamp=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
        namespace="default",
        name="a:1",
        actor="ci",
        reason=None,
        target=Descriptor.from_oci(descriptor(1)),
        labels={},
        immutable=True,
    )
    line = export_format.encode_line(1, event, None)
    assert line == (
        b'{"position":1,"namespace":"default","name":"a:1","version":1,'
        b'"kind":"registered","target":'
        + json.dumps(descriptor(1), separators=(",", ":")).encode()
        + b',"labels":{},"timestamp":"2026-11-28T09:30:00.000000Z","actor":"ci",'
        b'"reason":null,"immutable":true}\n'
    )
    unflagged = export_format.encode_line(
        1, _Flagged(**{**vars(event), "immutable": False}), None
    )
    assert b"immutable" not in unflagged
    monkeypatch.setitem(export_format.KINDS, "registered", _Flagged)
    read = export_format.decode_line(1, line).event
    assert (type(read), read) == (_Flagged, event)
    with pytest.raises(InvalidArgument) as refused:
        export_format.decode_line(7, line.replace(b"true", b'"yes"'))
    assert str(refused.value) == 'invalid line 7: immutable: must be a bool, not "yes"'


@pytest.mark.parametrize(
    ("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite")]
)
def test_write_once_names_keep_their_binding_across_a_move(
    make_location: Callable[[str], str], source: str, target: str
) -> None:
    with ImageStore.open(make_location(source)) as old:
        old.register("app:1.4.2", descriptor(1), actor="ci", immutable=True)
        old.delete("app:1.4.2", actor="ops", force=True)
        old.register("app:1.4.3", descriptor(2), actor="ci", immutable=True)
        before = old.history("app:1.4.2") + old.history("app:1.4.3")
        data = exported(old)
    assert [json.loads(line).get("immutable") for line in data.splitlines()] == [
        True,
        None,
        True,
    ]
    assert json.loads(data.splitlines()[1])["forced"] is True
    with ImageStore.open(make_location(target)) as new:
        new.import_log(io.BytesIO(data))
        assert new.history("app:1.4.2") + new.history("app:1.4.3") == before
        assert new.get("app:1.4.3").immutable is True
        with pytest.raises(Conflict, match="is immutable at"):
            new.register("app:1.4.2", descriptor(9))
        new.verify()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda store: store.export_log(None),
            "invalid file: must be a file object open for writing (binary or "
            "text), not NoneType",
        ),
        (
            lambda store: store.import_log("history.jsonl"),
            "invalid file: must be a file object open for reading (binary or "
            "text), not str",
        ),
        (
            lambda store: store.import_log(None),
            "invalid file: must be a file object open for reading (binary or "
            "text), not NoneType",
        ),
    ],
)
def test_something_other_than_a_file_is_refused_and_nothing_is_written(
    store: ImageStore, log_rows: Any, call: Callable[[ImageStore], object], message: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        call(store)
    assert str(refused.value) == message
    assert log_rows() == []
