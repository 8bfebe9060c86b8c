"""containerd's filters on `list`: the grammar's corners, the image fields, the
rows the views read, and the command line.

The parser cases follow containerd's pkg/filters (filter_test.go and
scanner_test.go): the same inputs mean the same, and break at the same place.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import INDEX, MANIFEST, SCRIPT, Run, digest, ok, sqlite_only
from imageledger import Descriptor, ImageStore
from imageledger.domain.filters import InvalidFilter, parse
from imageledger.errors import InvalidArgument
from imageledger.infrastructure.sqlite import (
    DIGEST_INDEX,
    list_keys_params,
    list_keys_statement,
)
from imageledger.projections.current_view import Image, ListKeys
from imageledger.projections.image_filter import image_query

REF_NAME = "org.opencontainers.image.ref.name"
D1, D2, D3, D4 = digest(1), digest(2), digest(3), digest(4)

# name: (media type, digest, labels, the target's annotations)
CORPUS: dict[str, tuple[str, str, dict[str, str], dict[str, str] | None]] = {
    "alpine:3.20": (INDEX, D1, {}, None),
    "app:prod": (
        MANIFEST,
        D2,
        {"team": "web", "com.example.tier": "gold"},
        {REF_NAME: "1.4.2"},
    ),
    "app:stage": (MANIFEST, D2, {"team": "web", "empty": ""}, None),
    "db:15": (
        INDEX,
        D3,
        {"team": "data", "more complex label": "x,y"},
        {REF_NAME: "15"},
    ),
    "tools:1": (MANIFEST, D4, {"moo": "牛", 'with \\ and "': "q"}, {"b": ""}),
}
ALL = sorted(CORPUS)


def target(name: str) -> dict[str, Any]:
    media_type, target_digest, _, annotations = CORPUS[name]
    oci: dict[str, Any] = {"mediaType": media_type, "digest": target_digest, "size": 7}
    if annotations is not None:
        oci["annotations"] = annotations
    return oci


def corpus_images() -> list[Image]:
    moment = datetime(2026, 11, 28, tzinfo=UTC)
    return [
        Image(
            namespace="default",
            name=name,
            target=Descriptor.from_oci(target(name)),
            labels=CORPUS[name][2],
            created_at=moment,
            updated_at=moment,
            version=1,
        )
        for name in ALL
    ]


def matching(*filters: str) -> list[str]:
    query = image_query(filters)
    return [image.name for image in corpus_images() if query.matches(image)]


def but(*names: str) -> list[str]:
    return [name for name in ALL if name not in names]


# (filter strings, the names they match)
MATCHES: list[tuple[tuple[str, ...], list[str]]] = [
    ((), ALL),
    (("",), ALL),
    (("", "name==nothing"), ALL),
    (("name",), ALL),
    (("name==app:prod",), ["app:prod"]),
    (("name!=app:prod",), but("app:prod")),
    (("name==app:prod", "name==db:15"), ["app:prod", "db:15"]),
    (("name==app:prod,name==db:15",), []),
    ((f"target.digest=={D2}",), ["app:prod", "app:stage"]),
    ((f"target.digest!={D2}",), but("app:prod", "app:stage")),
    (("target.digest",), ALL),
    ((f"target.mediatype=={INDEX}",), ["alpine:3.20", "db:15"]),
    (("target.mediatype~=index",), ["alpine:3.20", "db:15"]),
    ((f"target.mediaType=={INDEX}",), []),  # field names are case-sensitive
    (("target",), []),
    (("labels.team",), ["app:prod", "app:stage", "db:15"]),
    (("labels.team==web",), ["app:prod", "app:stage"]),
    (("labels.team!=web",), ["alpine:3.20", "db:15", "tools:1"]),  # absent too
    (("labels.team==web", "labels.team==data"), ["app:prod", "app:stage", "db:15"]),
    (("labels.team,name~=stage",), ["app:stage"]),
    (('labels."com.example.tier"==gold',), ["app:prod"]),
    (("labels.com.example.tier==gold",), ["app:prod"]),  # joined with dots
    (('labels."com.example".tier==gold',), ["app:prod"]),
    (("labels.com",), []),
    (("labels.empty",), ["app:stage"]),  # present with an empty value
    (('labels.empty==""',), ["app:stage"]),
    (('labels.empty!=""',), []),  # absent compares as "" in containerd
    (("labels.empty~=^$",), ALL),
    (('labels."more complex label"=="x,y"',), ["db:15"]),
    (('labels."with \\\\ and \\""==q',), ["tools:1"]),
    (("labels.moo==牛",), ["tools:1"]),
    (('labels.moo=="\\u725b"',), ["tools:1"]),
    (('labels.moo=="\\xe7\\x89\\x9b"',), ["tools:1"]),  # escapes make bytes
    (('labels.moo=="\\xe7"',), []),  # not UTF-8: equal to nothing
    ((f"annotations.{REF_NAME}==1.4.2",), ["app:prod"]),
    ((f'annotations."{REF_NAME}"',), ["app:prod", "db:15"]),
    (("annotations.b",), ["tools:1"]),
    (("annotations.b!=x",), ALL),
    (("name~=^app:",), ["app:prod", "app:stage"]),
    (("name~=/^app:(prod|stage)$/",), ["app:prod", "app:stage"]),
    (("name~=|^db:[0-9]{1,2}$|",), ["db:15"]),
    (("name~=/a{1,2}/",), ["alpine:3.20", "app:prod", "app:stage"]),
    (("name~=/p\\/d/",), []),  # \/ is the only escape of / inside /.../
    (("name~=p:pro\\w",), ["app:prod"]),  # unquoted, a backslash is the regex's
    (("name~=\\.2",), ["alpine:3.20"]),
    (("name~=牛",), []),
    (("name == app:prod",), ["app:prod"]),  # spaces around an operator
    ((" name==app:prod",), ["app:prod"]),
    (("name==app:prod, labels.team",), ["app:prod"]),  # and after a comma
    (("name==app:prod,labels.team==data",), []),
    (('"name"==app:prod',), ["app:prod"]),
    (("name.ignored==app:prod",), ["app:prod"]),  # as containerd's adaptor
    (("other",), []),  # unknown fields are absent
    (("other!=x",), ALL),
    (("labels.team==web.x-y_z",), []),  # punctuation belongs to the value
    (("name==app:prod,labels",), []),
]

# (filter strings, the position where it broke, what broke)
ERRORS: list[tuple[tuple[str, ...], int, str]] = [
    (("name==,",), 6, "expected a value"),
    (("name==app:prod,",), 15, "expected a field name"),  # a trailing comma
    ((",",), 0, "expected a field name"),
    (("a,,b",), 2, "expected a field name"),
    (("labels.",), 7, "expected a field name"),
    (("labels..x",), 7, "expected a field name"),
    (("   ",), 3, "expected a field name"),
    (("name==app:prod,?",), 15, "expected a field name"),
    (("name=app",), 4, "unknown operator '='"),
    (("name===app",), 4, "unknown operator '==='"),
    (("labels.team!",), 11, "unknown operator '!'"),
    (("name app",), 5, "expected an operator"),
    (("name ,x",), 5, "expected an operator"),  # no space before a comma
    (("name==app ",), 9, "unexpected ' '"),  # nor at the end
    (("name==a ,b",), 7, "unexpected ' '"),
    (('name=="a"b',), 9, "unexpected 'b'"),
    (("name==.x",), 6, "expected a value"),
    (("labels.|team|==web",), 7, "|...| quotes only a ~= value"),
    (("labels.team==/web/",), 13, "/.../ quotes only a ~= value"),
    (("labels.ns/key==v",), 9, "quoted text not terminated"),
    (('name=="abc',), 6, "quoted text not terminated"),
    (("name~=/a,b",), 6, "quoted text not terminated"),
    (('labels."a\nb"',), 7, "quoted text not terminated"),
    (('labels."\\g"',), 7, "illegal escape sequence"),
    (("name~=/a\\.b/",), 6, "illegal escape sequence"),
    (('labels."\\xaz"',), 7, "illegal numeric escape sequence"),
    (('labels."\\400"',), 7, "bad quoted text"),
    (('labels."\\U00110000"',), 7, "bad quoted text"),
    (("name~=[",), 6, "invalid regular expression"),
    (('name~="("',), 6, "invalid regular expression"),
    (('name~="\\xff"',), 6, "the regular expression is not valid UTF-8"),
    (("name\x00",), 4, "unexpected NUL character"),
    (("name==a\x00",), 7, "unexpected '\\x00'"),
    (("labels.\ufffd",), 7, "not valid UTF-8"),
    (("labels.\udcff",), 7, "not valid UTF-8"),  # an undecodable byte of argv
    (("name==app:prod", "name==,"), 6, "expected a value"),
]


@pytest.mark.parametrize(("filters", "expected"), MATCHES, ids=repr)
def test_a_filter_matches_what_it_matches_in_containerd(
    filters: tuple[str, ...], expected: list[str]
) -> None:
    assert matching(*filters) == expected


@pytest.mark.parametrize(("filters", "position", "problem"), ERRORS, ids=repr)
def test_a_malformed_filter_is_refused_with_where_it_broke(
    filters: tuple[str, ...], position: int, problem: str
) -> None:
    with pytest.raises(InvalidFilter) as caught:
        image_query(filters)
    assert caught.value.filter == filters[-1]
    assert caught.value.position == position
    assert caught.value.problem.startswith(problem)
    assert isinstance(caught.value, InvalidArgument)


def test_the_error_names_the_filter_the_position_and_marks_it() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse("name==,")
    assert str(caught.value) == (
        "invalid filter 'name==,': expected a value at position 6: name== >|,|<"
    )
    with pytest.raises(InvalidArgument) as caught:
        parse("labels.team==web,")
    assert str(caught.value) == (
        "invalid filter 'labels.team==web,': expected a field name or a quoted "
        "field at position 17: labels.team==web, >||<"
    )


def test_the_mark_of_a_long_filter_shows_only_the_place_it_broke() -> None:
    text = "name==" + "x" * 100 + " y"
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert str(caught.value) == (
        f"invalid filter 'name=={'x' * 54}...': unexpected ' ' at position 106: "
        f"...{'x' * 30} >| |< y"
    )


def test_control_characters_in_a_bad_filter_are_shown_escaped() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse("name==a\x1b[31m")
    assert str(caught.value) == (
        "invalid filter 'name==a\\x1b[31m': unexpected '\\x1b' at position 7: "
        "name==a >|\\x1b|< [31m"
    )


def test_filters_that_are_not_strings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid filters: .* not a bytes$"):
        parse(b"name==a")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^invalid filters: .* not None$"):
        image_query([None])  # type: ignore[list-item]


FILTER_PIECES = st.sampled_from(
    ["name", "labels", "target", ".", ",", "==", "!=", "~=", "=", "!", "~", '"',
     "/", "|", "\\", "\\x", "\\u00", "7", "a", " ", "\n", "\x00", "\ufffd",
     "\udcff", "牛", "[", "(", "*", "{1,2}", "'", "?"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(FILTER_PIECES, max_size=12).map("".join)))
def test_parsing_any_text_raises_nothing_but_invalid_argument(text: str) -> None:
    error: InvalidFilter | None = None
    try:
        image_query([text]).matches(corpus_images()[1])  # a filter that parses matches
    except InvalidFilter as e:
        error = e
    if error is not None:
        assert 0 <= error.position <= len(text)
        assert "\n" not in str(error) and "\x00" not in str(error)  # one line, shown


# The rows the views read.


@pytest.mark.parametrize(
    ("filters", "keys"),
    [
        ((), None),
        (("",), None),
        (("labels.team==web",), None),
        (("name==b,labels.x", "name==a"), ListKeys(("a", "b"), ())),
        (("name==a", f"target.digest=={D2}"), ListKeys(("a",), (D2,))),
        ((f"target.digest=={D2},name==a",), ListKeys(("a",), ())),  # name first
        (("name.x==a",), ListKeys(("a",), ())),
        (("name==a", "labels.x"), None),  # one alternative may match anything
        (("name!=a",), None),
        (("name~=a",), None),
        (("target.digest",), None),
        (('name=="\\x00"', 'name=="\\xff"'), ListKeys((), ())),  # no such text
    ],
)
def test_a_query_reads_only_rows_with_the_names_or_digests_every_alternative_needs(
    filters: tuple[str, ...], keys: ListKeys | None
) -> None:
    assert image_query(filters).keys == keys


@pytest.fixture
def corpus_store(store: ImageStore) -> ImageStore:
    for name in reversed(ALL):
        store.register(name, target(name), CORPUS[name][2])
    store.register("gone:1", target("app:prod"), {"team": "web"})
    store.delete("gone:1")
    store.register("app:prod", target("app:prod"), CORPUS["app:prod"][2], namespace="b")
    return store


def listed(store: ImageStore, *filters: str, namespace: str = "default") -> list[str]:
    images = store.list(*filters, namespace=namespace)
    assert isinstance(images, Iterator)
    return [image.name for image in images]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (("labels.team==web,target.mediatype~=manifest",), ["app:prod", "app:stage"]),
        (("name==db:15", f"target.digest=={D2}"), ["app:prod", "app:stage", "db:15"]),
        (("labels.team!=web",), ["alpine:3.20", "db:15", "tools:1"]),
        (("name~=/^(db|tools):/",), ["db:15", "tools:1"]),
        (
            ("labels.team", "annotations.b"),
            ["app:prod", "app:stage", "db:15", "tools:1"],
        ),
        (('labels."com.example.tier"==gold',), ["app:prod"]),
        ((f'annotations."{REF_NAME}"==15',), ["db:15"]),
        (("name==app:stage,labels.team==data",), []),  # read by name, then refused
        (("name==gone:1", "name==nope:1"), []),  # deleted or never registered
        ((f"target.digest=={D2},name!=app:prod",), ["app:stage"]),
    ],
)
def test_list_with_filters_on_both_backends(
    corpus_store: ImageStore, filters: tuple[str, ...], expected: list[str]
) -> None:
    assert listed(corpus_store, *filters) == expected


def test_a_filtered_list_keeps_to_its_namespace(corpus_store: ImageStore) -> None:
    assert listed(corpus_store, f"target.digest=={D2}", namespace="b") == ["app:prod"]
    assert listed(corpus_store, "name==app:prod", namespace="b") == ["app:prod"]
    assert listed(corpus_store, "name==db:15", namespace="b") == []


def test_a_malformed_filter_raises_before_anything_is_read(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match=r"expected a value at position 6"):
        store.list("name==app:prod", "name==,")


def test_filtered_lists_after_a_rebuild_use_the_rebuilt_table(
    corpus_store: ImageStore,
    location: str,
    select_sql: Callable[[str], list[tuple[Any, ...]]],
) -> None:
    corpus_store.rebuild()
    assert listed(corpus_store, f"target.digest=={D2}") == ["app:prod", "app:stage"]
    assert has_digest_index(location, select_sql)


def has_digest_index(
    location: str, select_sql: Callable[[str], list[tuple[Any, ...]]]
) -> bool:
    """Whether the store's database holds the view's digest index."""
    found = select_sql(
        "SELECT indexname FROM pg_indexes WHERE "
        f"schemaname=current_schema() AND indexname='{DIGEST_INDEX}'"
        if "://" in location
        else f"SELECT name FROM sqlite_master WHERE name='{DIGEST_INDEX}'"
    )
    return found == [(DIGEST_INDEX,)]


def test_a_store_without_the_digest_index_gets_it_when_opened(
    location: str,
    run_sql: Callable[[str], None],
    select_sql: Callable[[str], list[tuple[Any, ...]]],
) -> None:
    with ImageStore.open(location) as store:
        store.register("app:prod", target("app:prod"))
    assert has_digest_index(location, select_sql)
    run_sql(f"DROP INDEX {DIGEST_INDEX}")  # as a store made before it existed
    with ImageStore.open(location) as store:
        assert listed(store, f"target.digest=={D2}") == ["app:prod"]
    assert has_digest_index(location, select_sql)


@sqlite_only
def test_the_pushed_down_query_looks_rows_up_by_key_and_never_scans(
    corpus_store: ImageStore, db_path: Path
) -> None:
    keys = image_query(["name==db:15", f"target.digest=={D2}"]).keys
    assert keys is not None
    connection = sqlite3.connect(db_path)
    try:
        statement = list_keys_statement(connection.cursor(), "name")
        plan = [
            row[3]
            for row in connection.execute(
                f"EXPLAIN QUERY PLAN {statement}", list_keys_params("default", keys)
            )
        ]
        rows = connection.execute(statement, list_keys_params("default", keys))
        assert [row[0] for row in rows] == ["app:prod", "app:stage", "db:15"]
    finally:
        connection.close()
    assert "SEARCH images USING PRIMARY KEY (namespace=? AND name=?)" in plan
    assert (
        f"SEARCH images USING INDEX {DIGEST_INDEX} (namespace=? AND digest=?)" in plan
    )
    assert not [step for step in plan if step.startswith("SCAN images")]


def test_opening_never_waits_for_the_index_and_a_busy_store_lists_without_it(
    db_path: Path,
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("app:prod", target("app:prod"))
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute(f"DROP INDEX {DIGEST_INDEX}")
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with ImageStore.open(db_path, lock_timeout=30) as store:
            assert listed(store, f"target.digest=={D2}") == ["app:prod"]
        indexes = blocker.execute(
            f"SELECT 1 FROM sqlite_master WHERE name='{DIGEST_INDEX}'"
        ).fetchall()
        assert indexes == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_read_only_store_without_the_index_lists_and_stays_unchanged(
    db_path: Path, tmp_path: Path
) -> None:
    with ImageStore.open(db_path) as store:
        for name in ALL:
            store.register(name, target(name), CORPUS[name][2])
    connection = sqlite3.connect(db_path)
    connection.execute(f"DROP INDEX {DIGEST_INDEX}")
    connection.commit()
    connection.close()
    db_path.chmod(0o444)
    before = db_path.read_bytes()
    result = subprocess.run(
        [str(SCRIPT), "--db", str(db_path), "ls", "-q", f"target.digest=={D2}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        **_without_write_access(),
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "app:prod\napp:stage\n",
        "",
    )
    assert db_path.read_bytes() == before


def _without_write_access() -> dict[str, Any]:
    """Run a child that obeys file modes, also when the tests run as root."""
    if os.geteuid() != 0:
        return {}

    def drop() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2, 3):  # DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    try:
        subprocess.run([sys.executable, "-c", ""], preexec_fn=drop, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"running as root and cannot give up file capabilities: {e}")
    return {"preexec_fn": drop}


# The command line.


def test_cli_list_prints_the_images_any_filter_matches(
    corpus_store: ImageStore, run: Run
) -> None:
    stamp = {
        name: corpus_store.get(name).updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        for name in ("app:stage", "db:15")
    }
    assert ok(run("list", "labels.team==web,name~=stage", "name==db:15")) == (
        f"NAME       {'DIGEST':71}  {'MEDIATYPE':42}  SIZE  UPDATED\n"
        f"app:stage  {D2}  {MANIFEST}  7     {stamp['app:stage']}\n"
        f"db:15      {D3}  {INDEX}     7     {stamp['db:15']}\n"
    )
    assert ok(run("ls", "-q", f'annotations."{REF_NAME}"')) == "app:prod\ndb:15\n"
    assert ok(run("ls", "-q", "labels.team!=web")) == "alpine:3.20\ndb:15\ntools:1\n"
    lines = ok(run("--json", "list", f"target.digest=={D3}")).splitlines()
    assert [line.count('"name":"db:15"') for line in lines] == [1]


def test_cli_list_with_a_malformed_filter_exits_2_with_one_line(
    run: Run, location: str
) -> None:
    result = run("list", "labels.team==web", "name==,")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: invalid filter 'name==,': expected a value at position 6: name== >|,|<\n"
    )
    if "://" not in location:  # refused before the store is opened, or made
        assert not Path(location).exists()
