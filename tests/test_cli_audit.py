"""The audit commands through the installed console script, on both backends:
log, as-of, where, diff and replay --until, with exact output and exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from conftest import MANIFEST, Run, descriptor, digest, ok, when
from imageledger import ImageStore

D1, D2 = digest(1), digest(2)


@pytest.fixture
def moments(location: str) -> dict[int, datetime]:
    """A small history; returns each position's timestamp.

    1 app:prod -> d1 (alice)   3 app:prod -> d2 (bob)   5 team/app:prod -> d2 (carol)
    2 app:dev  -> d1 (bob)     4 app:dev deleted (alice)
    """
    with ImageStore.open(location) as store:
        store.register("app:prod", descriptor(1), actor="alice", reason="first")
        store.register("app:dev", descriptor(1), actor="bob")
        store.register("app:prod", descriptor(2), actor="bob", reason="promote")
        store.delete("app:dev", actor="alice")
        store.register("app:prod", descriptor(2), namespace="team", actor="carol")
        return {entry.position: entry.timestamp for entry in store.log()}


def test_log_prints_every_change_of_the_namespace_oldest_first(
    run: Run, moments: dict[int, datetime]
) -> None:
    t = {p: when(m) for p, m in moments.items()}
    assert ok(run("log")) == (
        f"POSITION  NAME      VERSION  KIND        {'DIGEST':71}  "
        "TIMESTAMP             ACTOR  REASON\n"
        f"1         app:prod  1        registered  {D1}  {t[1]}  alice  first\n"
        f"2         app:dev   1        registered  {D1}  {t[2]}  bob    -\n"
        f"3         app:prod  2        registered  {D2}  {t[3]}  bob    promote\n"
        f"4         app:dev   2        deleted     {'-':71}  {t[4]}  alice  -\n"
    )


def test_log_options_narrow_it_and_all_namespaces_widen_it(
    run: Run, moments: dict[int, datetime]
) -> None:
    def positions(*args: str) -> list[int]:
        out = ok(run("--json", "log", *args))
        return [json.loads(line)["position"] for line in out.splitlines()]

    assert positions("--actor", "bob") == [2, 3]
    assert positions("--digest", D1) == [1, 2]
    assert positions("--kind", "deleted") == [4]
    assert positions("--after", "2") == [3, 4]
    assert positions("--since", "2", "--until", "3") == [2, 3]
    assert positions("--limit", "1") == [1]
    assert positions("--name", "app:prod") == [1, 3]
    assert positions("--until", moments[2].isoformat()) == [1, 2]
    assert positions("--since", moments[3].isoformat()) == [3, 4]
    assert positions("-A", "--actor", "carol") == [5]
    assert positions("-A") == [1, 2, 3, 4, 5]
    tomorrow = (moments[5] + timedelta(days=1)).date().isoformat()
    assert positions("--since", tomorrow) == []
    assert positions("--until", tomorrow) == [1, 2, 3, 4]
    rows = ok(
        run("log", "-A", "--namespace-free-check" if False else "--kind", "registered")
    )
    assert rows.splitlines()[0].split() == [
        "NAMESPACE",
        "POSITION",
        "NAME",
        "VERSION",
        "KIND",
        "DIGEST",
        "TIMESTAMP",
        "ACTOR",
        "REASON",
    ]
    assert rows.splitlines()[-1].split()[:3] == ["team", "5", "app:prod"]


def test_log_json_lines_are_audit_entries(
    run: Run, moments: dict[int, datetime]
) -> None:
    first = json.loads(ok(run("--json", "log", "--limit", "1")))
    assert first == {
        "position": 1,
        "namespace": "default",
        "name": "app:prod",
        "version": 1,
        "kind": "registered",
        "target": descriptor(1),
        "labels": {},
        "timestamp": moments[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": "alice",
        "reason": "first",
        "immutable": False,
        "forced": False,
    }


def test_as_of_shows_the_images_or_one_image_as_they_were(
    run: Run, moments: dict[int, datetime]
) -> None:
    t = {p: when(m) for p, m in moments.items()}
    assert ok(run("as-of", "2")) == (
        f"NAME      {'DIGEST':71}  {'MEDIATYPE':{len(MANIFEST)}}  SIZE  UPDATED\n"
        f"app:dev   {D1}  {MANIFEST}  1001  {t[2]}\n"
        f"app:prod  {D1}  {MANIFEST}  1001  {t[1]}\n"
    )
    assert ok(run("as-of", "0")) == ("NAME  DIGEST  MEDIATYPE  SIZE  UPDATED\n")
    image = json.loads(ok(run("--json", "as-of", moments[3].isoformat(), "app:prod")))
    assert (image["target"]["digest"], image["version"]) == (D2, 2)
    assert image["createdAt"] == moments[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    past = ok(run("as-of", "1", "app:prod")).splitlines()
    assert past[1].split() == ["app:prod", D1, MANIFEST, "1001", t[1], "1", "no", "-"]


def test_as_of_with_filters_lists_the_matching_images_of_then(
    run: Run, moments: dict[int, datetime]
) -> None:
    out = ok(run("--json", "as-of", "2", "name==app:dev"))
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["app:dev"]
    out = ok(run("--json", "as-of", "3", f"target.digest=={D1}"))
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["app:dev"]
    bad = run("as-of", "3", "name==")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("Error: invalid filter 'name==': ")


def test_as_of_agrees_with_replay_until_at_every_point(
    run: Run, moments: dict[int, datetime]
) -> None:
    for point in ["0", "1", "2", "3", "4", "5", "99", moments[3].isoformat()]:
        assert ok(run("as-of", point)) == ok(run("replay", "--until", point)), point


def test_as_of_of_a_name_that_did_not_exist_then_exits_3(
    run: Run, moments: dict[int, datetime]
) -> None:
    result = run("as-of", "3", "app:dev")
    assert (result.returncode, result.stdout) == (0, result.stdout)
    gone = run("as-of", "4", "app:dev")
    assert (gone.returncode, gone.stdout, gone.stderr) == (
        3,
        "",
        'Error: image "app:dev" not found in namespace "default": it did not exist '
        "at log position 4\n",
    )


def test_where_lists_every_interval_a_digest_was_carried(
    run: Run, moments: dict[int, datetime]
) -> None:
    t = {p: when(m) for p, m in moments.items()}
    assert ok(run("where", D1)) == (
        "NAME      SINCE                 UNTIL                 POSITIONS  IMMUTABLE\n"
        f"app:prod  {t[1]}  {t[3]}  1..3       no\n"
        f"app:dev   {t[2]}  {t[4]}  2..4       no\n"
    )
    assert ok(run("where", D2, "-A")) == (
        "NAMESPACE  NAME      SINCE                 UNTIL  POSITIONS  IMMUTABLE\n"
        f"default    app:prod  {t[3]}  -      3..        no\n"
        f"team       app:prod  {t[5]}  -      5..        no\n"
    )
    lines = ok(run("--json", "where", D2)).splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "namespace": "default",
            "name": "app:prod",
            "since": moments[3].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "until": None,
            "sincePosition": 3,
            "untilPosition": None,
            "immutable": False,
        }
    ]
    assert ok(run("where", digest(99))) == "NAME  SINCE  UNTIL  POSITIONS  IMMUTABLE\n"


def test_diff_shows_added_removed_and_retargeted_names(
    run: Run, moments: dict[int, datetime]
) -> None:
    assert ok(run("diff", "1", "4")) == (
        f"CHANGE      NAME      {'BEFORE':71}  AFTER\n"
        f"retargeted  app:prod  {D1}  {D2}\n"
    )
    assert ok(run("diff", "0", "2")) == (
        "CHANGE  NAME      BEFORE  AFTER\n"
        f"added   app:dev   -       {D1}\n"
        f"added   app:prod  -       {D1}\n"
    )
    changes = [
        json.loads(x) for x in ok(run("--json", "diff", "2", "5", "-A")).splitlines()
    ]
    assert [(c["change"], c["namespace"], c["name"]) for c in changes] == [
        ("removed", "default", "app:dev"),
        ("retargeted", "default", "app:prod"),
        ("added", "team", "app:prod"),
    ]
    assert changes[0]["after"] is None and changes[0]["before"]["version"] == 1
    assert ok(run("diff", "3", "3")) == "CHANGE  NAME  BEFORE  AFTER\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["log", "--since", "last tuesday"],
            "Error: Invalid value for '--since': 'last tuesday' is neither a log "
            "position nor an RFC 3339 timestamp or date (e.g. 42, "
            "2026-11-28T09:00:00Z, 2026-11-28) (see 'imageledger log --help')",
        ),
        (
            ["log", "--kind", "moved"],
            "Error: Invalid value for '--kind': 'moved' is not one of 'registered', "
            "'deleted'. (see 'imageledger log --help')",
        ),
        (
            ["log", "--limit", "-1"],
            "Error: Invalid value for '--limit': -1 is not in the range x>=0. "
            "(see 'imageledger log --help')",
        ),
        (["log", "--digest", "sha256:abc"], None),
        (["where", "not-a-digest"], None),
        (
            ["as-of", "2", "app:prod", "name==x"],
            "Error: give one NAME, or FILTERs, not both "
            "(see 'imageledger as-of --help')",
        ),
        (
            ["diff", "1"],
            "Error: Missing argument 'WHEN'. (see 'imageledger diff --help')",
        ),
    ],
)
def test_bad_audit_arguments_exit_2_with_one_line(
    run: Run, moments: dict[int, datetime], args: list[str], message: str | None
) -> None:
    result = run(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    if message is not None:
        assert result.stderr == message + "\n"
