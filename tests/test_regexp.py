"""The `~=` of filters is Go's regexp (RE2), as in containerd.

The cases are the differences a run against containerd found (issue 17) and
others from Go's regexp tests (regexp/find_test.go, regexp/syntax/parse_test.go),
with the answers Go gives. Each runs through `store.list` on both backends and
through the command line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Run, descriptor, ok, sqlite_only
from imageledger import ImageStore
from imageledger.domain.filters import InvalidFilter, Regexp, RegexpError, parse

# (pattern, the text of label x (None: no such label), whether Go matches)
GO_MATCHES: list[tuple[str, str | None, bool]] = [
    # Python's re refused these, or read them otherwise (issue 17).
    (r"\pL", "alpine", True),
    (r"alpine\z", "alpine", True),
    (r"\Qalpine\E", "alpine", True),
    (r"\Qa.b", "axb", False),  # \Q to the end quotes the rest
    (r"(?U)alp", "alpine", True),
    (r"\x{61}lpine", "alpine", True),
    (r"(?-i)alp", "alpine", True),
    (r"^[[:alpha:]]+$", "alpine", True),
    (r"[[:^alpha:]]", "3.20", True),
    (r"[[:^alpha:]]", "alpine", False),
    (r"\w", "é", False),  # \w, \d, \s and \b are ASCII in Go
    (r"\W", "é", True),
    (r"\d", "٣", False),
    (r"\s", "\u00a0", False),
    (r"\bx\b", "éx", True),
    (r"alpine$", "alpine\n", False),  # $ is the end of the text, not of a line
    (r"(?m)alpine$", "alpine\nx", True),
    (r"^b", "a\nb", False),
    (r"(?m)^b", "a\nb", True),
    # Linear time: backtracking engines take for ever on these.
    (r"(a+)+$", "a" * 40 + "!", False),
    (r"(a+)+$", "a" * 40, True),
    (r"(x+x+)+y", "x" * 40, False),
    # From Go's regexp tests.
    (r"ab+c", "xabbbbbcx", True),
    (r"a*", None, True),  # an absent field is the empty string
    (r"^$", None, True),
    (r"a|b|", "c", True),
    (r"(?:)", "a", True),
    (r"(?i)", "a", True),
    (r"\141", "a", True),  # octal
    (r"[\x{41}-\x{5A}]", "Q", True),
    (r"\x{10FFFF}", "\U0010ffff", True),
    (r".", "\n", False),
    (r"(?s).", "\n", True),
    (r"[^a]", "\n", True),
    (r"[[:word:]]", "_", True),
    (r"[[:alpha:]]", "é", False),
    (r"(?i)[[:upper:]]", "a", True),
    (r"\p{Greek}", "\u03b1", True),  # alpha
    (r"\p{^Greek}", "\u03b1", False),
    (r"\PL", "abc", False),
    (r"\pN", "٣", True),
    (r"\p{Han}", "牛", True),
    (r"\p{Lu}", "É", True),
    (r"(?i)k", "\u212a", True),  # the Kelvin sign folds to k
    (r"(?i)Σ", "ς", True),
    (r"(?i)straße", "STRASSE", False),  # simple case folding only
    (r"a{,3}", "a{,3}", True),  # not a repetition: literal text
    (r"a{,3}", "aaa", False),
    (r"[^\x00-\x{10FFFF}]", "a", False),  # the empty class
    (r"(?P<name>ab)c", "abc", True),
    (r"\xff", "ÿ", True),  # a code point, not a byte
]

# (pattern, Go's complaint as RE2 words it): Go refuses these at compile
# time; containerd then matches nothing, imageledger refuses the filter.
GO_REFUSES: list[tuple[str, str]] = [
    (r"alp(?=ine$)", "invalid perl operator: (?="),
    (r"alp(?!x)", "invalid perl operator: (?!"),
    (r"(?<=a)lp", "invalid perl operator: (?<="),
    (r"(p)\1", "invalid escape sequence: \\1"),
    (r"alpine\Z", "invalid escape sequence: \\Z"),
    (r"p++", "bad repetition operator: ++"),
    (r"a**", "bad repetition operator: **"),
    (r"x{2}{3}", "bad repetition operator: {2}{3}"),
    (r"(?>alp)", "invalid perl operator: (?>"),
    (r"a{1001}", "invalid repetition size: {1001}"),
    (r"a{2,1}", "invalid repetition size: {2,1}"),
    (r"[z-a]", "invalid character class range: z-a"),
    (r"\8", "invalid escape sequence: \\8"),
    (r"(?z)", "invalid perl operator: (?z"),
    (r"\C", "invalid escape sequence: \\C"),  # RE2 takes it, Go does not
    (r"(?P<n>a)(?P<n>b)", "duplicate capture group name: n"),  # likewise
    (r"(", "missing ): ("),
    ("\\", "trailing \\"),
]


def quoted(pattern: str) -> str:
    """`pattern` as a double-quoted filter value (Go's escapes)."""
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def case_name(index: int) -> str:
    return f"case:{index:02d}"


def case_filter(index: int, pattern: str) -> str:
    return f"name=={case_name(index)},labels.x~={quoted(pattern)}"


@pytest.fixture
def cases_store(store: ImageStore) -> ImageStore:
    store.register_many(
        (case_name(i), descriptor(i), {} if text is None else {"x": text})
        for i, (_, text, _) in enumerate(GO_MATCHES)
    )
    return store


def test_there_are_at_least_thirty_go_cases() -> None:
    assert len(GO_MATCHES) + len(GO_REFUSES) >= 30


def test_list_matches_what_go_matches(cases_store: ImageStore) -> None:
    found = {
        (pattern, text): [
            image.name for image in cases_store.list(case_filter(i, pattern))
        ]
        == [case_name(i)]
        for i, (pattern, text, _) in enumerate(GO_MATCHES)
    }
    assert found == {(pattern, text): go for pattern, text, go in GO_MATCHES}


@pytest.mark.parametrize(("pattern", "complaint"), GO_REFUSES, ids=repr)
def test_list_refuses_what_go_refuses_naming_the_position(
    store: ImageStore, pattern: str, complaint: str
) -> None:
    store.register("app:1", descriptor(1), {"x": "alpine"})
    with pytest.raises(InvalidFilter) as caught:
        store.list(f"labels.team==web,name~={quoted(pattern)}")
    assert caught.value.position == 23  # the value's opening quote
    assert caught.value.problem == f"invalid regular expression ({complaint})"


def test_the_cli_lists_what_go_matches(cases_store: ImageStore, run: Run) -> None:
    filters = [case_filter(i, pattern) for i, (pattern, _, _) in enumerate(GO_MATCHES)]
    expected = [case_name(i) for i, (_, _, go) in enumerate(GO_MATCHES) if go]
    assert ok(run("list", "-q", *filters)).splitlines() == expected


@sqlite_only  # refused before the store is opened: the backend plays no part
@pytest.mark.parametrize(("pattern", "complaint"), GO_REFUSES, ids=repr)
def test_the_cli_refuses_what_go_refuses_with_exit_2(
    run: Run, pattern: str, complaint: str
) -> None:
    text = f"name~={quoted(pattern)}"
    result = run("list", "-q", text)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: invalid filter {text!r}: invalid regular expression ({complaint}) "
        f'at position 6: name~= >|"|< {text[7:]}\n'
    )


def test_the_error_of_a_bad_regular_expression_reads_in_one_line() -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse("labels.x~=alp(?=ine$)")
    assert str(caught.value) == (
        "invalid filter 'labels.x~=alp(?=ine$)': invalid regular expression "
        "(invalid perl operator: (?=) at position 10: labels.x~= >|a|< lp(?=ine$)"
    )


def test_a_regexp_is_searched_for_anywhere_in_the_text() -> None:
    assert Regexp("lp").search("alpine")
    assert not Regexp("^lp").search("alpine")
    with pytest.raises(RegexpError, match=r"^missing \]: \[$"):
        Regexp("[")


# Issue 16: with Python's re, `(a+)+$` over a 41-character label ran until
# killed. Each check runs in a child with a generous timeout, so that a
# regression fails the test instead of hanging the suite.

PATHOLOGICAL = "labels.x~=(a+)+$"


@pytest.fixture
def pathological_store(store: ImageStore) -> ImageStore:
    store.register("app:evil", descriptor(1), {"x": "a" * 40 + "!"})
    store.register("app:fine", descriptor(2), {"x": "a" * 40})
    return store


def test_a_pathological_filter_returns_from_list_and_as_of(
    pathological_store: ImageStore, run: Run
) -> None:
    assert ok(run("list", "-q", PATHOLOGICAL)) == "app:fine\n"
    assert ok(run("list", "-q", "labels.x~=(a|aa)*!$")) == "app:evil\n"
    assert ok(run("--json", "as-of", "1", PATHOLOGICAL)) == ""
    listed = ok(run("--json", "as-of", "2", PATHOLOGICAL)).splitlines()
    assert [line.count('"name":"app:fine"') for line in listed] == [1]


def test_a_pathological_filter_returns_from_watch(
    pathological_store: ImageStore, location: str, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        from imageledger import ImageStore
        with ImageStore.open({location!r}) as store:
            events = store.watch(after=0, filters=[{PATHOLOGICAL!r}])
            print(next(events).name)
            events.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "app:fine\n", "")


@pytest.mark.parametrize(
    "command",
    [("list",), ("as-of", "0"), ("export-layout", "out"), ("watch", "--after", "0")],
    ids=lambda command: command[0],
)
def test_every_command_that_takes_filters_refuses_a_bad_regexp_with_exit_2(
    run: Run, tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = run(*command, "labels.x~=(p)\\1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: invalid filter 'labels.x~=(p)\\\\1': invalid regular expression "
        "(invalid escape sequence: \\1) at position 10: labels.x~= >|(|< p)\\1\n"
    )
    assert not (tmp_path / "out").exists()


def test_re2_is_compiled_in_one_module_only() -> None:
    root = Path(__file__).resolve().parent.parent
    sources = [
        path
        for layer in ("application", "domain", "projections", "infrastructure")
        for path in sorted((root / layer).glob("*.py"))
    ]
    assert [p.name for p in sources if "import re2" in p.read_text()] == ["filters.py"]
    assert "import re\n" not in (root / "domain" / "filters.py").read_text()
