"""No write and no import turns a tampered or rule-breaking history into a verified one.

Each case is what a hostile user did with plain SQL on the store, or with a
crafted history file, and what imageledger must answer: the write refuses
(exit 5, nothing written), the import refuses (exit 2, nothing written), or
verify fails; reads never crash. Every case runs on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_cli import register_args

from conftest import Run, descriptor, digest, ok
from imageledger import ImageStore
from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import IntegrityError, InvalidArgument

Sql = Callable[[str], None]
Select = Callable[[str], list[tuple[Any, ...]]]


def events(select_sql: Select) -> int:
    return int(select_sql("SELECT COUNT(*) FROM stored_events")[0][0])


def error_line(result: Any) -> str:
    """The one line a refused command printed, after checking it is one line."""
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stderr)


# 1. A view tamper is never laundered into the log by the next write.


def test_a_write_onto_a_view_row_unmarked_immutable_is_refused_and_writes_nothing(
    run: Run, run_sql: Sql, select_sql: Select
) -> None:
    ok(run(*register_args("app:2", 2, "--immutable")))
    checkpoint = ok(run("checkpoint")).strip()
    run_sql("UPDATE images SET immutable=false WHERE name='app:2'")

    moved = run(*register_args("app:2", 9))

    assert moved.returncode == 5
    line = error_line(moved)
    assert "log position 1: view differs from the fold" in line
    assert "image 'app:2' in namespace 'default'" in line
    assert "immutable is False in the view, True in the log" in line
    assert "imageledger rebuild" in line
    assert events(select_sql) == 1
    # The tamper itself is what verify reports, and rebuild repairs it.
    assert run("verify", "--checkpoint", checkpoint).returncode == 5
    ok(run("rebuild"))
    ok(run("verify", "--checkpoint", checkpoint))
    refused = run(*register_args("app:2", 9))
    assert refused.returncode == 4
    assert "is immutable at" in error_line(refused)


def test_a_write_onto_a_view_row_with_another_version_is_refused_and_backups_restore(
    run: Run, run_sql: Sql, select_sql: Select, tmp_path: Path
) -> None:
    for n in (1, 2, 3):
        ok(run(*register_args("app:3", n)))
    run_sql("UPDATE images SET version=10 WHERE name='app:3'")

    moved = run(*register_args("app:3", 4))

    assert moved.returncode == 5
    assert "version is 10 in the view, 3 in the log" in error_line(moved)
    assert events(select_sql) == 3
    ok(run("rebuild"))
    image = json.loads(ok(run("--json", *register_args("app:3", 4))))
    assert image["version"] == 4
    backup = tmp_path / "backup.jsonl"
    ok(run("export", str(backup)))
    restored = tmp_path / "restored.db"
    imported = run("--db", str(restored), "import", str(backup))
    assert imported.returncode == 0, imported.stderr
    with ImageStore.open(restored) as store:
        assert [e.version for e in store.history("app:3")] == [1, 2, 3, 4]
        store.verify()


def test_a_write_onto_a_lost_view_row_is_refused(
    store: ImageStore, run_sql: Sql, select_sql: Select
) -> None:
    store.register("app:1", descriptor(1), immutable=True)
    run_sql("DELETE FROM images WHERE name='app:1'")
    with pytest.raises(IntegrityError, match="the current view has no row of it"):
        store.register("app:1", descriptor(2))
    assert events(select_sql) == 1


def test_a_write_onto_a_view_row_the_log_never_made_is_refused(
    store: ImageStore, run_sql: Sql, select_sql: Select
) -> None:
    store.register("app:1", descriptor(1))
    run_sql(
        "INSERT INTO images SELECT namespace, 'ghost:1', digest, media_type, "
        "target, labels, created_at, updated_at, version, live, immutable "
        "FROM images WHERE name='app:1'"
    )
    with pytest.raises(IntegrityError, match="the log has no event of it"):
        store.register("ghost:1", descriptor(2))
    assert events(select_sql) == 1


def test_a_view_row_with_a_moved_time_is_refused_not_copied_into_the_next_event(
    store: ImageStore, run_sql: Sql, select_sql: Select
) -> None:
    store.register("app:1", descriptor(1))
    run_sql("UPDATE images SET updated_at='2999-01-01T00:00:00+00:00'")
    with pytest.raises(IntegrityError, match="updated_at is .* in the view"):
        store.register("app:1", descriptor(2))
    assert events(select_sql) == 1


def test_a_batch_onto_a_tampered_view_row_writes_none_of_its_items(
    store: ImageStore, run_sql: Sql, select_sql: Select
) -> None:
    store.register("app:1", descriptor(1), immutable=True)
    run_sql("UPDATE images SET immutable=false WHERE name='app:1'")
    with pytest.raises(IntegrityError, match="immutable is False in the view"):
        store.register_many([("new:1", descriptor(3)), ("app:1", descriptor(2))])
    assert events(select_sql) == 1


# 2. An import replays every line through the domain's rules.


def _export_of_an_immutable_name(tmp_path: Path) -> list[dict[str, Any]]:
    """The history file of a store where app:2 is immutable and app:1 is not."""
    source = tmp_path / "source.db"
    with ImageStore.open(source) as store:
        store.register("app:1", descriptor(1), actor="alice")
        store.register("app:2", descriptor(2), actor="alice", immutable=True)
        path = tmp_path / "source.jsonl"
        with path.open("wb") as file:
            store.export_log(file)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _appended(
    lines: list[dict[str, Any]], name: str, kind: str, **fields: Any
) -> list[dict[str, Any]]:
    last = [line for line in lines if line["name"] == name][-1]
    line = {
        **last,
        "position": lines[-1]["position"] + 1,
        "version": last["version"] + 1,
        "kind": kind,
        "timestamp": last["timestamp"],
        "actor": "mallory",
    }
    line.pop("chain")
    line.pop("immutable", None)
    if kind == "deleted":
        line["target"] = line["labels"] = None
    line.update(fields)
    return [*lines, line]


@pytest.mark.parametrize(
    ("name", "kind", "fields", "field", "rule"),
    [
        (
            "app:2",
            "registered",
            {"target": descriptor(9)},
            "target",
            f"is immutable at {digest(2)}; it cannot point at {digest(9)}",
        ),
        (
            "app:2",
            "registered",
            {},
            "immutable",
            "'app:2' in namespace 'default' is immutable: every later "
            "registration must be",
        ),
        (
            "app:2",
            "deleted",
            {},
            "forced",
            "'app:2' in namespace 'default' is immutable: its delete must be forced",
        ),
        (
            "app:1",
            "deleted",
            {"forced": True},
            "forced",
            "'app:1' in namespace 'default' is not immutable: its delete cannot "
            "be forced",
        ),
        (
            "app:1",
            "registered",
            {"timestamp": "2026-01-01T00:00:00.000000+05:00"},
            "timestamp",
            "the time of an event of 'app:1' in namespace 'default' is not UTC",
        ),
    ],
)
def test_an_import_that_breaks_a_rule_is_refused_whole(
    run: Run,
    select_sql: Select,
    tmp_path: Path,
    name: str,
    kind: str,
    fields: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    lines = _appended(_export_of_an_immutable_name(tmp_path), name, kind, **fields)
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text("".join(json.dumps(line) + "\n" for line in lines))

    imported = run("import", str(crafted))

    assert imported.returncode == 2
    message = error_line(imported)
    assert message.startswith(f"Error: invalid line 3: {field}: "), message
    assert rule in message
    assert events(select_sql) == 0


def test_an_import_without_chain_fields_is_checked_by_the_rules_and_verifies(
    store: ImageStore, tmp_path: Path
) -> None:
    lines = _export_of_an_immutable_name(tmp_path)
    for line in lines:
        line.pop("chain")
    crafted = tmp_path / "unlinked.jsonl"
    crafted.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with crafted.open("rb") as file:
        assert store.import_log(file) == 2
    assert store.verify().events == 2
    assert store.get("app:2").immutable is True


# 3. Crafted timestamps: refused by import; a store that holds one is not a crash.

CRAFTED_TIMES = [
    "0001-01-01T00:00:00.000000+23:59",
    "9999-12-31T23:59:59.999999-23:59",
]


@pytest.mark.parametrize("moment", CRAFTED_TIMES)
def test_an_import_of_a_time_that_is_not_utc_is_refused(
    run: Run, select_sql: Select, tmp_path: Path, moment: str
) -> None:
    lines = _export_of_an_immutable_name(tmp_path)
    lines[0]["timestamp"] = moment
    lines[0].pop("chain")
    lines[1].pop("chain")
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text("".join(json.dumps(line) + "\n" for line in lines))

    imported = run("import", str(crafted))

    assert imported.returncode == 2
    assert error_line(imported) == (
        "Error: invalid line 1: timestamp: the time of an event of 'app:1' "
        "in namespace 'default' is not UTC\n"
    )
    assert events(select_sql) == 0


def _offset_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() != timedelta(0)
    return moment


@pytest.mark.parametrize("moment", CRAFTED_TIMES)
def test_a_stored_time_out_of_utc_range_is_a_one_line_error_for_every_read(
    location: str, run: Run, moment: str
) -> None:
    # What an import made before times had to be UTC: appended without the
    # rules, as that import did.
    with ImageStore.open(location) as store:
        store.register("app:0", descriptor(1))
        store._log.append_events([_registered("app:1", _offset_time(moment))])
    reads = [
        ["list"],
        ["get", "app:1"],
        ["history", "app:1"],
        ["log"],
        ["as-of", "2"],
        ["replay"],
        ["where", digest(2)],
        ["export", "-"],
    ]
    for args in reads:
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        line = error_line(result)
        assert "app:1" in line or "position 2" in line, (args, line)
    verified = run("verify")
    assert verified.returncode == 5
    assert "log position 2: rule broken" in error_line(verified)
    assert "is not UTC" in verified.stderr


def test_a_stored_time_with_another_offset_reads_in_utc_and_fails_verify(
    location: str,
) -> None:
    moment = _offset_time("2026-01-01T05:00:00+05:00")
    with ImageStore.open(location) as store:
        store._log.append_events([_registered("app:1", moment)])
        entry = store.history("app:1")[0]
        assert entry.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
        assert entry.timestamp.utcoffset() == timedelta(0)
        with pytest.raises(IntegrityError, match="log position 1: rule broken"):
            store.verify()


def _registered(name: str, moment: datetime) -> ImageName.Registered:
    return ImageName.Registered(
        originator_id=image_id("default", name),
        originator_version=1,
        timestamp=moment,
        namespace="default",
        name=name,
        actor="mallory",
        reason=None,
        target=Descriptor.from_oci(descriptor(2)),
        labels={},
    )


# 4. Tracking rows moved or lost never brick the store.


@pytest.mark.parametrize("view", ["audit_index", "current_view"])
@pytest.mark.parametrize("position", [0, 4])
def test_a_tracking_row_moved_back_is_refolded_and_every_command_works(
    run: Run, run_sql: Sql, view: str, position: int
) -> None:
    for n in range(1, 7):
        ok(run(*register_args(f"app:{n % 3}", n)))
    ok(run("delete", "app:1", "--actor", "alice"))
    log_before = ok(run("log"))
    list_before = ok(run("list"))
    checkpoint = ok(run("checkpoint")).strip()
    run_sql(
        f"UPDATE tracking SET notification_id={position} "
        f"WHERE application_name='{view}'"
    )

    assert ok(run("log")) == log_before
    assert ok(run("list")) == list_before
    ok(run("history", "app:2"))
    ok(run("verify", "--checkpoint", checkpoint))
    ok(run(*register_args("app:1", 9)))
    ok(run("verify"))
    ok(run("rebuild"))
    assert ok(run("log")).startswith(log_before)


@pytest.mark.parametrize("view", ["audit_index", "current_view"])
def test_a_lost_tracking_row_is_refolded(
    run: Run, run_sql: Sql, select_sql: Select, view: str
) -> None:
    for n in range(1, 4):
        ok(run(*register_args(f"app:{n}", n)))
    log_before = ok(run("log"))
    run_sql(f"DELETE FROM tracking WHERE application_name='{view}'")
    assert ok(run("log")) == log_before
    ok(run("verify"))
    assert select_sql(
        f"SELECT notification_id FROM tracking WHERE application_name='{view}'"
    ) == [(3,)]


@pytest.mark.parametrize("view", ["audit_index", "current_view"])
def test_a_tracking_row_moved_past_the_log_is_a_view_problem_that_rebuild_repairs(
    run: Run, run_sql: Sql, select_sql: Select, view: str
) -> None:
    for n in range(1, 4):
        ok(run(*register_args(f"app:{n}", n)))
    run_sql(f"UPDATE tracking SET notification_id=1000 WHERE application_name='{view}'")

    ok(run("get", "app:1"))
    refused = run(*register_args("app:1", 9))
    assert refused.returncode == 5
    assert "reflects log position 1000, but the log ends at position 3" in (
        error_line(refused)
    )
    assert events(select_sql) == 3
    verified = run("verify")
    assert verified.returncode == 5
    assert "view differs from the fold" in error_line(verified)
    ok(run("rebuild"))
    ok(run("verify"))
    ok(run(*register_args("app:1", 9)))


def test_the_library_says_which_field_an_import_line_breaks(
    store: ImageStore, tmp_path: Path
) -> None:
    lines = _appended(_export_of_an_immutable_name(tmp_path), "app:2", "deleted")
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with crafted.open("rb") as file, pytest.raises(InvalidArgument) as refused:
        store.import_log(file)
    assert refused.value.field == "line 3: forced"
