"""Write-once names on the command line: `register --immutable`, `delete --force`.

The installed console script in a subprocess, on both backends (the `run`
fixture of tests/test_cli.py); exit codes, stdout and stderr exactly.
"""

from __future__ import annotations

import json

from test_cli import register_args

from conftest import MANIFEST, Rows, Run, digest, ok, when
from imageledger import ImageStore

NAME = "app:1.4.2"


def refused_repoint(asked: int) -> str:
    return (
        f'Error: image "{NAME}" in namespace "default" is immutable at {digest(1)}; '
        f"it cannot point at {digest(asked)}\n"
    )


REFUSED_DELETE = (
    f'Error: image "{NAME}" in namespace "default" is immutable at {digest(1)}; '
    "delete it with --force\n"
)


def test_register_immutable_says_so_and_get_shows_it(run: Run, location: str) -> None:
    out = ok(run(*register_args(NAME, 1, "--immutable", "--label", "team=web")))
    assert out == f"{NAME}  {digest(1)}  version 1  immutable\n"
    with ImageStore.open(location) as store:
        updated = when(store.get(NAME).updated_at)
    assert ok(run("get", NAME)) == (
        f"NAME       {'DIGEST':71}  {'MEDIATYPE':42}  SIZE  {'UPDATED':20}  VERSION  IMMUTABLE  LABELS\n"
        f"{NAME}  {digest(1)}  {MANIFEST}  1001  {updated}  1        yes        team=web\n"
    )
    got = json.loads(ok(run("--json", "get", NAME)))
    assert (got["immutable"], got["version"]) == (True, 1)
    listed = json.loads(ok(run("--json", "list")))
    assert listed["immutable"] is True


def test_repointing_an_immutable_name_exits_4_naming_the_bound_digest(
    run: Run, log_rows: Rows
) -> None:
    ok(run(*register_args(NAME, 1, "--immutable")))
    rows = log_rows()
    for extra in ((), ("--immutable",), ("--if-version", "1")):
        refused = run(*register_args(NAME, 2, *extra))
        assert (refused.returncode, refused.stdout, refused.stderr) == (
            4,
            "",
            refused_repoint(2),
        )
    # The same digest again is no change at all.
    again = ok(run(*register_args(NAME, 1)))
    assert again == f"{NAME}  {digest(1)}  version 1  immutable\n"
    assert log_rows() == rows


def test_deleting_an_immutable_name_needs_force_and_history_shows_it(
    run: Run, location: str, log_rows: Rows
) -> None:
    ok(run(*register_args(NAME, 1, "--immutable", "--actor", "ci")))
    ok(run(*register_args("app:old", 2, "--actor", "ci")))
    rows = log_rows()

    refused = run("rm", NAME)
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        4,
        "",
        REFUSED_DELETE,
    )
    assert log_rows() == rows
    # With several names, a refused one is reported and the others go on.
    mixed = run("rm", NAME, "app:old", "app:none")
    assert (mixed.returncode, mixed.stdout) == (4, "app:old\n")
    assert mixed.stderr == (
        REFUSED_DELETE + 'Error: image "app:none" not found in namespace "default"\n'
    )

    assert ok(run("delete", NAME, "--force", "--actor", "sec")) == f"{NAME}\n"
    again = run(*register_args(NAME, 2))
    assert (again.returncode, again.stdout, again.stderr) == (
        4,
        "",
        refused_repoint(2),
    )
    back = ok(run(*register_args(NAME, 1, "--actor", "ci")))
    assert back == f"{NAME}  {digest(1)}  version 3  immutable\n"

    with ImageStore.open(location) as store:
        t = [when(entry.timestamp) for entry in store.history(NAME)]
        positions = [str(entry.position) for entry in store.history(NAME)]
    assert ok(run("history", NAME)) == (
        f"POSITION  VERSION  KIND                    {'DIGEST':71}  {'TIMESTAMP':20}  ACTOR  REASON\n"
        f"{positions[0]:8}  1        registered (immutable)  {digest(1)}  {t[0]}  ci     -\n"
        f"{positions[1]:8}  2        deleted (forced)        {'-':71}  {t[1]}  sec    -\n"
        f"{positions[2]:8}  3        registered (immutable)  {digest(1)}  {t[2]}  ci     -\n"
    )
    entries = [
        json.loads(line) for line in ok(run("--json", "history", NAME)).splitlines()
    ]
    assert [(e["kind"], e["immutable"], e["forced"]) for e in entries] == [
        ("registered", True, False),
        ("deleted", True, True),
        ("registered", True, False),
    ]


def test_force_on_a_name_that_is_not_immutable_just_deletes_it(
    run: Run,
) -> None:
    ok(run(*register_args("app:1", 1)))
    assert ok(run("rm", "--force", "app:1")) == "app:1\n"
    entries = [
        json.loads(line) for line in ok(run("--json", "history", "app:1")).splitlines()
    ]
    assert [(e["kind"], e["immutable"], e["forced"]) for e in entries] == [
        ("registered", False, False),
        ("deleted", False, False),
    ]
    assert ok(run(*register_args("app:1", 2))) == f"app:1  {digest(2)}  version 3\n"


def test_register_and_delete_help_show_the_flags_with_examples(run: Run) -> None:
    register_help = ok(run("register", "--help"))
    assert "--immutable" in register_help
    assert "register app:1.4.2 --descriptor desc.json --immutable" in register_help
    delete_help = ok(run("delete", "--help"))
    assert "--force" in delete_help
    assert "delete app:1.4.2 --force" in delete_help
