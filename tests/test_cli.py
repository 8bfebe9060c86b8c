"""End to end: the installed `imageledger` console script, run in a subprocess
against a real database (a file, and a PostgreSQL schema). Each test asserts the exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    INDEX,
    MANIFEST,
    SCRIPT,
    Run,
    descriptor,
    digest,
    ok,
    on_a_terminal,
    when,
)
from imageledger import ImageStore

RICH = {
    "mediaType": INDEX,
    "digest": digest(7),
    "size": 1733,
    "annotations": {"org.opencontainers.image.ref.name": "1.4.2", "b": ""},
    "urls": ["https://mirror.example/blobs/7"],
    "artifactType": "application/vnd.example.sbom+json",
    "platform": {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.features": ["x"],
    },
}


def register_args(name: str, n: int, *extra: str) -> list[str]:
    target = descriptor(n)
    return [
        "register",
        name,
        "--digest",
        target["digest"],
        "--media-type",
        target["mediaType"],
        "--size",
        str(target["size"]),
        *extra,
    ]


def test_the_console_script_is_installed_beside_the_interpreter() -> None:
    assert SCRIPT.exists()


def test_register_prints_the_name_digest_and_version(run: Run) -> None:
    out = ok(run(*register_args("app:prod", 1, "--actor", "ci", "--reason", "r1")))
    assert out == f"app:prod  {digest(1)}  version 1\n"
    assert (
        ok(run(*register_args("app:prod", 2))) == f"app:prod  {digest(2)}  version 2\n"
    )


def test_register_of_the_same_target_writes_nothing(run: Run, log_rows: Any) -> None:
    ok(run(*register_args("app:prod", 1)))
    rows = log_rows()
    assert (
        ok(run(*register_args("app:prod", 1))) == f"app:prod  {digest(1)}  version 1\n"
    )
    assert log_rows() == rows


def test_get_prints_a_table_with_version_and_labels(run: Run, location: str) -> None:
    # a= sets no label: containerd removes a label set to the empty string.
    ok(run(*register_args("app:prod", 1, "--label", "team=web", "--label", "a=")))
    with ImageStore.open(location) as store:
        updated = when(store.get("app:prod").updated_at)
    expected = (
        f"NAME      {'DIGEST':71}  {'MEDIATYPE':42}  SIZE  {'UPDATED':20}  VERSION  IMMUTABLE  LABELS\n"
        f"app:prod  {digest(1)}  {MANIFEST}  1001  {updated}  1        no         team=web\n"
    )
    assert ok(run("get", "app:prod")) == expected
    assert ok(run("inspect", "app:prod")) == expected


def test_list_prints_an_aligned_table_sorted_by_name(run: Run, location: str) -> None:
    ok(run(*register_args("zeta:1", 2)))
    ok(run(*register_args("alpha:1", 1)))
    with ImageStore.open(location) as store:
        a, z = (when(store.get(n).updated_at) for n in ("alpha:1", "zeta:1"))
    assert ok(run("list")) == (
        f"NAME     {'DIGEST':71}  {'MEDIATYPE':42}  SIZE  UPDATED\n"
        f"alpha:1  {digest(1)}  {MANIFEST}  1001  {a}\n"
        f"zeta:1   {digest(2)}  {MANIFEST}  1002  {z}\n"
    )
    assert ok(run("ls", "-q")) == "alpha:1\nzeta:1\n"


def test_list_of_an_empty_store_prints_only_the_header(run: Run) -> None:
    assert ok(run("list")) == "NAME  DIGEST  MEDIATYPE  SIZE  UPDATED\n"
    assert ok(run("list", "-q")) == ""
    assert ok(run("--json", "list")) == ""


def test_namespace_option_and_environment_select_the_namespace(run: Run) -> None:
    ok(run("-n", "prod", *register_args("app:1", 1)))
    assert ok(run("list", "-q")) == ""
    assert ok(run("-n", "prod", "list", "-q")) == "app:1\n"
    assert ok(run("list", "-q", env={"IMAGELEDGER_NAMESPACE": "prod"})) == "app:1\n"


def test_db_defaults_to_the_environment_then_the_working_directory(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    other = tmp_path / "other.db"
    for extra, expected in [({"IMAGELEDGER_DB": str(other)}, other), ({}, None)]:
        result = subprocess.run(
            [str(SCRIPT), *register_args("app:1", 1)],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert (expected or tmp_path / "imageledger.db").exists()


def test_json_get_list_and_history_round_trip_a_descriptor_exactly(
    run: Run, tmp_path: Path
) -> None:
    path = tmp_path / "desc.json"
    path.write_text(json.dumps(RICH))
    registered = json.loads(
        ok(run("--json", "register", "app:1", "--descriptor", path.name))
    )
    got = json.loads(ok(run("--json", "get", "app:1")))
    listed = [json.loads(line) for line in ok(run("--json", "list")).splitlines()]
    entries = [
        json.loads(line) for line in ok(run("--json", "history", "app:1")).splitlines()
    ]
    assert registered == got == listed[0]
    assert got["target"] == RICH
    assert entries[0]["target"] == RICH
    assert set(got) == {
        "namespace", "name", "target", "labels", "immutable", "createdAt",
        "updatedAt", "version",
    }  # fmt: skip


def test_descriptor_can_come_from_standard_input(run: Run) -> None:
    ok(run("register", "app:1", "--descriptor", "-", stdin=json.dumps(RICH)))
    assert json.loads(ok(run("--json", "get", "app:1")))["target"] == RICH


def test_annotations_given_as_options_land_on_the_descriptor(run: Run) -> None:
    ok(run(*register_args("app:1", 1, "--annotation", "k=v", "--annotation", "x=y=z")))
    target = json.loads(ok(run("--json", "get", "app:1")))["target"]
    assert target["annotations"] == {"k": "v", "x": "y=z"}


def test_history_prints_who_changed_what_and_why(run: Run, location: str) -> None:
    ok(run(*register_args("app:prod", 1, "--actor", "ci", "--reason", "release 1")))
    ok(run(*register_args("app:prod", 2, "--actor", "bob")))
    ok(run("rm", "app:prod", "--actor", "alice", "--reason", "retired"))
    with ImageStore.open(location) as store:
        t = [when(entry.timestamp) for entry in store.history("app:prod")]
    assert ok(run("history", "app:prod")) == (
        f"POSITION  VERSION  KIND        {'DIGEST':71}  {'TIMESTAMP':20}  ACTOR  REASON\n"
        f"1         1        registered  {digest(1)}  {t[0]}  ci     release 1\n"
        f"2         2        registered  {digest(2)}  {t[1]}  bob    -\n"
        f"3         3        deleted     {'-':71}  {t[2]}  alice  retired\n"
    )
    lines = ok(run("--json", "history", "app:prod")).splitlines()
    last = json.loads(lines[-1])
    assert (last["kind"], last["target"], last["labels"], last["reason"]) == (
        "deleted",
        None,
        None,
        "retired",
    )


def test_conditional_register_exits_4_on_conflict_and_writes_nothing(
    run: Run, log_rows: Any
) -> None:
    ok(run(*register_args("app:1", 1)))
    rows = log_rows()
    result = run(*register_args("app:1", 2, "--if-absent"))
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == (
        'Error: image "app:1" already exists in namespace "default" (version 1)\n'
    )
    result = run(*register_args("app:1", 2, "--if-version", "7"))
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == (
        'Error: image "app:1" in namespace "default" is at version 1, not 7\n'
    )
    assert log_rows() == rows
    assert "version 2" in ok(run(*register_args("app:1", 2, "--if-version", "1")))


def test_get_of_a_missing_name_exits_3_with_one_line(run: Run) -> None:
    result = run("get", "app:nope")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == 'Error: image "app:nope" not found in namespace "default"\n'


def test_delete_of_several_names_reports_the_missing_one_and_exits_3(
    run: Run,
) -> None:
    ok(run(*register_args("a:1", 1)))
    ok(run(*register_args("b:1", 2)))
    result = run("delete", "a:1", "c:1", "b:1", "--reason", "cleanup")
    assert (result.returncode, result.stdout) == (3, "a:1\nb:1\n")
    assert result.stderr == 'Error: image "c:1" not found in namespace "default"\n'
    assert ok(run("list", "-q")) == ""


def test_delete_with_a_bad_name_deletes_nothing(run: Run, log_rows: Any) -> None:
    ok(run(*register_args("a:1", 1)))
    rows = log_rows()
    result = run("rm", "a:1", "Bad:1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Error: invalid name: ")
    assert log_rows() == rows


def test_delete_if_digest_only_deletes_the_matching_target(run: Run) -> None:
    ok(run(*register_args("a:1", 1)))
    result = run("rm", "a:1", "--if-digest", digest(2))
    assert result.returncode == 3
    assert ok(run("--json", "rm", "a:1", "--if-digest", digest(1))) == (
        '{"namespace":"default","name":"a:1"}\n'
    )


def test_replay_prints_what_list_prints(run: Run) -> None:
    for n in range(5):
        ok(run(*register_args(f"app:{n}", n)))
    ok(run("rm", "app:3"))
    ok(run(*register_args("app:1", 9)))
    assert ok(run("replay")) == ok(run("list"))
    assert ok(run("--json", "replay")) == ok(run("--json", "list"))


def test_rebuild_reports_the_events_folded_and_is_quiet_when_piped(run: Run) -> None:
    for n in range(3):
        ok(run(*register_args(f"app:{n}", n)))
    assert ok(run("rebuild")) == "rebuilt the views from 3 events\n"
    assert json.loads(ok(run("--json", "rebuild"))) == {"events": 3}


def test_rebuild_draws_a_progress_bar_when_stderr_is_a_terminal(
    run: Run, location: str, tmp_path: Path
) -> None:
    with ImageStore.open(location) as store:
        for n in range(3):
            store.register(f"app:{n}", descriptor(n))
    code, out, drawn = on_a_terminal(location, "rebuild")
    assert (code, out.decode()) == (
        0,
        "rebuilt the views from 3 events\n",
    )
    assert b"rebuilding [" in drawn
    assert b"100%  3/3 events" in drawn


def _bad_inputs(tmp: Path) -> list[tuple[list[str], int, str]]:
    (tmp / "notjson.json").write_text("{nope")
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "latin1.json").write_bytes(b'{"mediaType": "caf\xe9"}')
    (tmp / "dupe.json").write_text('{"size": 1, "size": 2}')
    (tmp / "bad.json").write_text(json.dumps({**RICH, "size": -1}))
    (tmp / "adir").mkdir()
    d = digest(1)
    return [
        (register_args("Bad:1", 1), 2, "Error: invalid name: "),
        (register_args("a:1", 1, "-n", "x"), 2, "Error: No such option '-n'. (-n is a "
         "global option: put it before the command, as in 'imageledger -n ... COMMAND')"),
        (["-n", "bad ns", *register_args("a:1", 1)], 2, "Error: invalid namespace: "),
        (["register", "a:1", "--digest", "sha256:abc", "--media-type", INDEX,
          "--size", "1"], 2, "Error: invalid --digest: "),
        (["register", "a:1", "--digest", d, "--media-type", "nope",
          "--size", "1"], 2, "Error: invalid --media-type: "),
        (["register", "a:1", "--digest", d, "--media-type", INDEX,
          "--size", "-5"], 2, "Error: invalid --size: "),
        (["register", "a:1", "--digest", d, "--media-type", INDEX,
          "--size", "12kb"], 2, "Error: Invalid value for '--size': "),
        (["register", "a:1", "--digest", d, "--media-type", INDEX],
         2, "Error: missing --size: give --digest, --media-type and --size"),
        (register_args("a:1", 1, "--label", "novalue"),
         2, "Error: invalid --label: expected KEY=VALUE, got 'novalue'"),
        (register_args("a:1", 1, "--label", "=v"),
         2, "Error: invalid --label: expected KEY=VALUE, got '=v'"),
        (register_args("a:1", 1, "--label", "k=1", "--label", "k=2"),
         2, "Error: invalid --label: 'k' is given twice"),
        (register_args("a:1", 1, "--annotation", "nope"),
         2, "Error: invalid --annotation: expected KEY=VALUE"),
        (register_args("a:1", 1, "--label", "k=" + "v" * 5000),
         2, "Error: invalid labels"),
        (register_args("a:1", 1, "--if-absent", "--if-version", "1"),
         2, "Error: give --if-absent or --if-version, not both"),
        (register_args("a:1", 1, "--if-version", "-1"),
         2, "Error: Invalid value for '--if-version': "),
        (register_args("a:1", 1, "--actor", ""), 2, "Error: invalid actor: "),
        (["register", "a:1", "--descriptor", "missing.json"],
         2, "Error: invalid --descriptor: cannot read 'missing.json': No such file"),
        (["register", "a:1", "--descriptor", "adir"],
         2, "Error: invalid --descriptor: cannot read 'adir': Is a directory"),
        (["register", "a:1", "--descriptor", "notjson.json"],
         2, "Error: invalid --descriptor: 'notjson.json' is not JSON"),
        (["register", "a:1", "--descriptor", "list.json"],
         2, "Error: invalid --descriptor: 'list.json' must hold a JSON object, not list"),
        (["register", "a:1", "--descriptor", "latin1.json"],
         2, "Error: invalid --descriptor: 'latin1.json' is not UTF-8 text"),
        (["register", "a:1", "--descriptor", "dupe.json"],
         2, "Error: invalid --descriptor: 'dupe.json': key 'size' appears twice"),
        (["register", "a:1", "--descriptor", "bad.json"], 2, "Error: invalid target.size"),
        (["register", "a:1", "--descriptor", "bad.json", "--size", "1"],
         2, "Error: --descriptor cannot be combined with --size"),
        (["register", "a:1"], 2, "Error: missing --digest, --media-type, --size"),
        (["register"], 2, "Error: Missing argument 'NAME'."),
        (["frobnicate"], 2, "Error: No such command 'frobnicate'."),
        (["get"], 2, "Error: Missing argument 'NAME'."),
        (["rm"], 2, "Error: Missing argument 'NAME...'."),
        (["rm", "a:1", "--if-digest", "md5"], 2, "Error: invalid --if-digest: "),
        (["history", "b:1"], 3, 'Error: image "b:1" not found in namespace "default": it has no history'),
    ]  # fmt: skip


def test_bad_input_gives_one_line_the_documented_exit_code_and_changes_nothing(
    run: Run, tmp_path: Path, log_rows: Any
) -> None:
    ok(run(*register_args("a:1", 5)))
    rows = log_rows()
    for args, code, start in _bad_inputs(tmp_path):
        result = run(*args)
        assert (result.returncode, result.stdout) == (code, ""), (args, result)
        assert result.stderr.startswith(start), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert log_rows() == rows, args


def test_a_file_that_is_not_a_store_exits_1_and_is_left_alone(
    tmp_path: Path, run: Run
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    result = subprocess.run(
        [str(SCRIPT), "--db", str(path), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {str(path)!r} is not an imageledger store (not an SQLite database)\n"
    )
    assert path.read_text() == "hello\n"


def test_a_missing_directory_for_the_store_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "--db", str(tmp_path / "no" / "x.db"), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot create ")
    assert result.stderr.count("\n") == 1


def test_no_arguments_show_the_help_on_stderr_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Usage: imageledger [OPTIONS] COMMAND")
    assert "delete (rm)" in result.stderr


def test_options_without_a_command_exit_2_with_one_line(run: Run) -> None:
    result = run()
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "Error: Missing command. (see 'imageledger --help')\n"


@pytest.mark.parametrize(
    "command",
    [
        "register",
        "get",
        "list",
        "delete",
        "history",
        "replay",
        "rebuild",
        "checkpoint",
        "verify",
    ],
)
def test_every_command_has_help_with_an_example(run: Run, command: str) -> None:
    out = ok(run(command, "--help"))
    assert out.startswith(f"Usage: imageledger {command} ")
    assert "Example" in out
    assert f"imageledger {command}" in out.split("Example", 1)[1]


def test_version_prints_the_package_version(run: Run) -> None:
    from imageledger import __version__

    assert ok(run("--version")) == f"imageledger {__version__}\n"


def test_python_dash_m_runs_the_same_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imageledger", "--db", str(tmp_path / "x.db"), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "NAME  DIGEST  MEDIATYPE  SIZE  UPDATED\n",
        "",
    )


def test_help_and_version_start_without_loading_the_store(tmp_path: Path) -> None:
    for args in (["--help"], ["--version"], ["get", "--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "imageledger", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
        }
        assert "imageledger.cli" in imported
        assert not {"pydantic", "eventsourcing", "sqlite3"} & imported, args


def test_a_huge_argument_is_cut_in_the_error_line(run: Run) -> None:
    result = run(*register_args("a:1", 1)[:-2], "--size", "x" * 70_000)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: Invalid value for '--size': '{'x' * 60}...' (70,000 characters) "
        "is not a valid integer. (see 'imageledger register --help')\n"
    )


def test_control_characters_in_an_error_are_escaped(run: Run) -> None:
    result = run("--json", "get", "\x1b[31mred")
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert result.stderr.startswith("Error: invalid name: ")


def test_a_long_store_path_is_shown_whole_in_errors(tmp_path: Path) -> None:
    folder = tmp_path / ("d" * 70) / ("e" * 70)  # still under 256 in all
    folder.mkdir(parents=True)
    path = folder / "notes.txt"
    path.write_text("hello\n")
    result = subprocess.run(
        [str(SCRIPT), "--db", str(path), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"Error: {str(path)!r} is not an imageledger store" in result.stderr
