"""The auditors' pages of `imageledger serve` over a real socket: the real
server in a subprocess (tests/serving.py), on SQLite and PostgreSQL.

These read the HTML as a client gets it; tests/test_web_browser.py drives
the same pages in a real Chromium.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import descriptor, digest
from imageledger import ImageStore
from imageledger.timeline import (
    MAX_BANDS,
    MAX_SHAPES,
    NOW_WIDTH,
    PLOT_WIDTH,
    marks,
    timeline,
)
from imageledger.web import CSP, HOME, PAGE_SIZE
from serving import READ, WRITE, Reply, Server, serving, write_tokens

HTML = "text/html; charset=utf-8"


def positions(reply: Reply) -> list[int]:
    """The positions of an events table, top to bottom."""
    text = reply.body.decode()
    return [int(p) for p in re.findall(r'<td class="number position">(\d+)</td>', text)]


def bands(reply: Reply) -> list[str]:
    """The digests of a timeline's bands, top to bottom."""
    return re.findall(
        r'<g class="band band-\d" data-digest="([^"]+)">', reply.body.decode()
    )


def page(server: Server, path: str, token: str | None = READ) -> Reply:
    return server.call("GET", path, token=token)


def history_path(name: str, namespace: str = "default") -> str:
    return f"/ui/namespaces/{namespace}/history/{quote(name, safe='/:@')}"


@pytest.fixture
def server(location: str, tmp_path: Path) -> Iterator[Server]:
    """A server with tokens (write: ci-bot, read: auditor) on a small store:
    app:prod went 1 -> 2 -> 3, app:dev points at 2, db:prod at 9 in `other`."""
    with ImageStore.open(location) as store:
        store.register("app:prod", descriptor(1), {"team": "web"}, actor="alice")
        store.register("app:prod", descriptor(2), actor="bob", reason="release 2")
        store.register("app:dev", descriptor(2), actor="bob")
        store.register("app:prod", descriptor(3), actor="carol", reason="release 3")
        store.register("db:prod", descriptor(9), namespace="other", actor="dora")
    with serving(location, token_file=write_tokens(tmp_path / "tokens")) as running:
        yield running


def test_root_redirects_to_the_images_of_the_default_namespace(server: Server) -> None:
    reply = page(server, "/", token=None)
    assert (reply.status, reply.headers["location"]) == (303, HOME)


@pytest.mark.parametrize(
    "path",
    [
        HOME,
        history_path("app:prod"),
        f"/ui/where/{digest(2)}",
        "/ui/diff?a=1&b=4",
        "/ui/log",
        "/ui/verify",
        "/ui/login",
    ],
)
def test_every_page_is_html_under_the_content_security_policy(
    server: Server, path: str
) -> None:
    reply = page(server, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == HTML
    assert reply.headers["content-security-policy"] == CSP
    assert CSP.startswith("default-src 'self';")
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in reply.body.decode()


def test_the_images_page_lists_the_namespace_and_links_each_timeline(
    server: Server,
) -> None:
    text = page(server, HOME).body.decode()
    assert re.findall(r'<a class="name" href="([^"]+)">([^<]+)</a>', text) == [
        (history_path("app:dev"), "app:dev"),
        (history_path("app:prod"), "app:prod"),
    ]
    # The switcher offers every namespace with history.
    assert 'href="/ui/namespaces/other/images">other</a>' in text


def test_the_images_page_applies_the_filter_and_shows_it_in_the_box(
    server: Server,
) -> None:
    text = page(server, f"{HOME}?filter=labels.team%3D%3Dweb").body.decode()
    assert re.findall(r'<a class="name" href="[^"]+">([^<]+)</a>', text) == []
    text = page(server, f"{HOME}?filter=name~%3Ddev").body.decode()
    assert re.findall(r'<a class="name" href="[^"]+">([^<]+)</a>', text) == ["app:dev"]
    assert 'name="filter" value="name~=dev"' in text


def test_a_timeline_draws_one_band_per_target_in_order_and_lists_every_event(
    server: Server,
) -> None:
    reply = page(server, history_path("app:prod"))
    assert bands(reply) == [digest(1), digest(2), digest(3)]
    assert positions(reply) == [1, 2, 4]
    text = reply.body.decode()
    assert text.count('class="mark registered"') == 1
    assert text.count('class="mark retargeted"') == 2
    assert f'<a class="digest" href="/ui/where/{digest(2)}">{digest(2)}</a>' in text


def test_the_where_page_shows_every_name_that_pointed_at_the_digest(
    server: Server,
) -> None:
    text = page(server, f"/ui/where/{digest(2)}").body.decode()
    rows = re.findall(r"<tr>\s*<td>default</td>\s*<td><a[^>]+>([^<]+)</a>", text)
    assert rows == ["app:prod", "app:dev"]
    # app:prod moved on at position 4; app:dev still points at it.
    assert '<td class="number">2 to 4</td>' in text
    assert text.count("<strong>now</strong>") == 1


def test_the_diff_page_shows_added_and_retargeted_names(server: Server) -> None:
    text = page(server, "/ui/diff?a=2&b=5").body.decode()
    changes = re.findall(r'<tr class="(\w+)">\s*<td>\w+</td>\s*<td>(\w+)</td>', text)
    assert changes == [
        ("added", "default"),
        ("retargeted", "default"),
        ("added", "other"),
    ]
    text = page(server, "/ui/diff?a=2&b=5&namespace=other").body.decode()
    assert re.findall(r'<tr class="(\w+)">', text) == ["added"]


def test_the_verify_page_runs_verify_and_shows_the_checkpoint(server: Server) -> None:
    head = server.call("GET", "/v1/checkpoint", token=READ).json()
    text = page(server, "/ui/verify").body.decode()
    assert f'<code id="checkpoint">5:{head["head"]}</code>' in text
    assert 'id="result"' not in text  # GET shows; POST runs
    reply = server.call(
        "POST",
        "/ui/verify",
        body=f"checkpoint=5%3A{head['head']}".encode(),
        token=READ,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    text = reply.body.decode()
    assert reply.status == 200
    assert "<h2>Verified</h2>" in text
    assert '<dd id="events">5</dd>' in text
    assert f"<dt>checkpoint proved</dt><dd><code>5:{head['head']}</code>" in text


def test_verify_against_a_checkpoint_the_log_does_not_extend_shows_the_failure(
    server: Server,
) -> None:
    reply = server.call(
        "POST",
        "/ui/verify",
        body=f"checkpoint=3%3A{digest(7)}".encode(),
        token=READ,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    text = reply.body.decode()
    assert reply.status == 200
    assert "<h2>Verification failed</h2>" in text
    assert "position 3" in text


def test_bad_input_is_an_html_page_with_the_status_and_the_message(
    server: Server,
) -> None:
    cases = {
        f"{HOME}?filter=labels.%3D%3D": 400,
        history_path("nothing:here"): 404,
        f"{history_path('app:prod')}?page=2": 400,
        f"{history_path('app:prod')}?page=x": 400,
        "/ui/where/sha256:abc": 400,
        "/ui/diff?a=1": 400,
        "/ui/log?since=yesterday": 400,
        "/ui/namespaces/bad..namespace/images": 400,
    }
    for path, status in cases.items():
        reply = page(server, path)
        text = reply.body.decode()
        assert (path, reply.status, reply.headers["content-type"]) == (
            path,
            status,
            HTML,
        )
        assert re.search(r'<p class="error" id="error">[^<]+</p>', text), path
        assert "Traceback" not in text


# Tokens and the login cookie.


def test_without_a_token_a_page_answers_401_with_the_login_form(
    server: Server,
) -> None:
    reply = page(server, history_path("app:prod"), token=None)
    text = reply.body.decode()
    assert reply.status == 401
    assert '<form method="post" action="/ui/login">' in text
    assert f'name="next" value="{history_path("app:prod")}"' in text
    assert "app:dev" not in text


@pytest.mark.parametrize("token", [READ, WRITE])
def test_a_read_or_write_token_in_the_header_opens_the_pages(
    server: Server, token: str
) -> None:
    assert page(server, HOME, token=token).status == 200


def test_an_unknown_token_is_refused_and_never_shown(server: Server) -> None:
    for reply in (
        page(server, HOME, token="guess-token-123"),
        page(server, "/ui/login?token=guess-token-123", token=None),
        page(server, "/ui/log?token=guess-token-123", token=None),
        server.call("GET", HOME, headers={"Cookie": "imageledger_token=Z3Vlc3M="}),
    ):
        text = reply.body.decode()
        assert reply.status == 401
        assert "guess-token-123" not in text
        assert "Z3Vlc3M=" not in text
        assert "set-cookie" not in reply.headers


def test_login_sets_a_strict_httponly_cookie_that_opens_the_pages(
    server: Server,
) -> None:
    reply = server.call(
        "POST",
        "/ui/login",
        body=f"token={READ}&next=%2Fui%2Flog".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (reply.status, reply.headers["location"]) == (303, "/ui/log")
    cookie = reply.headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert {"httponly", "samesite=strict", "path=/"} <= set(attributes)
    assert READ not in cookie  # base64url of it, as a cookie must be plain ASCII
    value = cookie.split(";")[0]
    opened = server.call("GET", "/ui/log", headers={"Cookie": value})
    assert opened.status == 200
    assert '<span class="who">auditor</span>' in opened.body.decode()
    assert READ not in opened.body.decode()


def test_login_by_query_sets_the_cookie_and_goes_only_to_this_site(
    server: Server,
) -> None:
    for given, expected in [
        ("%2Fui%2Fdiff", "/ui/diff"),
        ("%2F%2Fevil.example%2F", HOME),
        ("https%3A%2F%2Fevil.example%2F", HOME),
        ("%2F%5Cevil.example", HOME),
    ]:
        reply = page(server, f"/ui/login?token={READ}&next={given}", token=None)
        assert (reply.status, reply.headers["location"]) == (303, expected)
        assert "httponly" in reply.headers["set-cookie"].lower()


def test_logout_clears_the_cookie(server: Server) -> None:
    reply = server.call("POST", "/ui/logout")
    assert (reply.status, reply.headers["location"]) == (303, "/ui/login")
    assert reply.headers["set-cookie"].startswith('imageledger_token=""; ')


def test_pages_are_open_without_a_token_file(location: str) -> None:
    with ImageStore.open(location) as store:
        store.register("app:prod", descriptor(1))
    with serving(location) as server:
        reply = page(server, history_path("app:prod"), token=None)
        assert reply.status == 200
        assert bands(reply) == [digest(1)]


def test_static_files_are_only_those_shipped(server: Server) -> None:
    reply = page(server, "/ui/static/app.css", token=None)
    assert (reply.status, reply.headers["content-type"]) == (
        200,
        "text/css; charset=utf-8",
    )
    assert b"svg .bar" in reply.body
    for path in ("/ui/static/web.py", "/ui/static/..%2Fweb.py", "/ui/static/"):
        assert page(server, path, token=None).status == 404


# Escaping.


def test_hostile_labels_reasons_and_actors_are_escaped_and_made_visible(
    location: str,
) -> None:
    with ImageStore.open(location) as store:
        store.register(
            "app:prod",
            descriptor(1),
            {"<b>k</b>": "<script>alert(1)</script>"},
            actor="mallory\u202egpj.exe",
            reason='"><img src=x onerror=alert(2)>\x1b[31m',
        )
    with serving(location) as server:
        for path in (history_path("app:prod"), "/ui/log", HOME):
            text = page(server, path, token=None).body.decode()
            assert "<script>alert" not in text
            assert "<img" not in text
            assert "\u202e" not in text
            assert "\x1b" not in text
        text = page(server, history_path("app:prod"), token=None).body.decode()
        assert (
            '<span class="label">&lt;b&gt;k&lt;/b&gt;=&lt;script&gt;alert(1)&lt;/script&gt;</span>'
            in text
        )
        assert '<td class="actor">mallory\\u202egpj.exe</td>' in text
        assert (
            '<td class="reason">&#34;&gt;&lt;img src=x onerror=alert(2)&gt;\\x1b[31m</td>'
            in text
        )
        # The SVG's tooltips too.
        assert "by mallory\\u202egpj.exe (position 1)</title>" in text


def test_a_hostile_name_in_the_address_comes_back_as_text(server: Server) -> None:
    hostile = quote("<img src=x onerror=alert(1)>\u202e", safe="")
    script = quote('name=="><script>alert(1)</script>', safe="")
    for path in (
        f"/ui/namespaces/default/history/{hostile}",
        f"/ui/namespaces/{hostile}/images",
        f"/ui/where/{hostile}",
        f"{HOME}?filter={script}",
    ):
        text = page(server, path).body.decode()
        assert "<img" not in text
        assert "<script" not in text
        assert "\u202e" not in text


# Paging and bounds.


def test_a_long_history_is_paged_and_its_timeline_merges_intervals(
    location: str,
) -> None:
    total = 3000  # more intervals than the plot has pixels
    pages = total // PAGE_SIZE
    with ImageStore.open(location) as store:
        # Three targets taking turns: every event a retarget.
        store.register_many(("busy:1", descriptor(i % 3)) for i in range(total))
    with serving(location) as server:
        first = page(server, history_path("busy:1"), token=None)
        assert positions(first) == list(range(1, PAGE_SIZE + 1))
        last = page(server, f"{history_path('busy:1')}?page={pages}", token=None)
        assert positions(last) == list(range(total - PAGE_SIZE + 1, total + 1))
        assert f"Page {pages} of {pages}" in last.body.decode()
        assert bands(first) == [digest(0), digest(1), digest(2)]
        # Bars closer than a pixel merge: a band has at most one a pixel,
        # fewer than the 1,000 intervals of each target here.
        bars = len(re.findall(r'<rect class="bar', first.body.decode()))
        assert 3 <= bars <= 3 * (PLOT_WIDTH + NOW_WIDTH) < total


def test_a_timeline_draws_at_most_max_bands_and_says_how_many_it_left_out(
    location: str,
) -> None:
    with ImageStore.open(location) as store:
        store.register_many(("many:1", descriptor(i)) for i in range(MAX_BANDS + 7))
    with serving(location) as server:
        reply = page(server, history_path("many:1"), token=None)
        assert bands(reply) == [digest(i) for i in range(MAX_BANDS)]
        assert (
            '<span id="hidden">7 more targets are not drawn; the table lists every event.</span>'
            in reply.body.decode()
        )


def test_the_log_page_filters_and_pages_by_position(location: str) -> None:
    with ImageStore.open(location) as store:
        store.register_many(
            [(f"n{i}:1", descriptor(i)) for i in range(PAGE_SIZE + 20)], actor="a"
        )
        store.register("late:1", descriptor(1), actor="b")
    with serving(location) as server:
        first = page(server, "/ui/log", token=None)
        assert positions(first) == list(range(1, PAGE_SIZE + 1))
        following = re.search(r'<a rel="next" href="\?([^"]+)">', first.body.decode())
        assert following is not None
        assert following[1] == f"after={PAGE_SIZE}"
        rest = page(server, f"/ui/log?{following[1]}", token=None)
        assert positions(rest) == list(range(PAGE_SIZE + 1, PAGE_SIZE + 22))
        assert 'rel="next"' not in rest.body.decode()
        only_b = page(server, "/ui/log?actor=b&kind=registered&name=", token=None)
        assert positions(only_b) == [PAGE_SIZE + 21]


# The timeline's drawing, from the library's history.


def drawn(store: ImageStore, name: str) -> list[tuple[str, int, list[str]]]:
    """Each band of `name`'s timeline: (digest, bars, marks left to right)."""
    chart = timeline(store.history(name))
    return [
        (band.digest, len(band.bars), [mark.kind for mark in marks(band)])
        for band in chart.bands
    ]


def test_a_change_of_labels_only_draws_nothing_new(store: ImageStore) -> None:
    store.register("app:1", descriptor(1))
    store.register("app:1", descriptor(1), {"team": "web"})
    assert drawn(store, "app:1") == [(digest(1), 1, ["registered"])]


def test_a_delete_ends_the_bar_and_a_new_registration_starts_another(
    store: ImageStore,
) -> None:
    store.register("app:1", descriptor(1))
    store.delete("app:1")
    store.register("app:1", descriptor(1), immutable=True)
    (band,) = timeline(store.history("app:1")).bands
    assert [mark.kind for mark in marks(band)] == [
        "registered",
        "deleted",
        "registered",
        "immutable",
    ]
    assert [(bar.until is None, bar.immutable) for bar in band.bars] == [
        (False, False),
        (True, True),
    ]


def test_the_shapes_drawn_stay_bounded_whatever_the_number_of_intervals(
    store: ImageStore,
) -> None:
    total = 2 * MAX_SHAPES + 500
    store.register_many(("busy:1", descriptor(i % 4)) for i in range(total))
    chart = timeline(store.history("busy:1"))
    assert [band.digest for band in chart.bands] == [digest(i) for i in range(4)]
    bars = sum(len(band.bars) for band in chart.bands)
    retargets = sum(
        len([m for m in band.marks.values() if m.kind == "retargeted"])
        for band in chart.bands
    )
    assert 4 <= bars <= MAX_SHAPES + 4
    assert 4 <= retargets <= MAX_SHAPES + 4
    # Every event is still counted, in the marks' tooltips.
    counted = sum(m.events for band in chart.bands for m in band.marks.values())
    assert counted == total


def test_the_where_form_goes_to_the_digests_page(server: Server) -> None:
    reply = page(server, f"/ui/where?digest={digest(2)}")
    assert (reply.status, reply.headers["location"]) == (303, f"/ui/where/{digest(2)}")


def test_the_images_page_is_paged_by_name_and_keeps_the_filter(location: str) -> None:
    names = [f"app/n{i:03d}:1" for i in range(PAGE_SIZE + 5)]
    with ImageStore.open(location) as store:
        store.register_many((name, descriptor(1)) for name in names)
        store.register("other:1", descriptor(2))
    with serving(location) as server:
        first = page(server, f"{HOME}?filter=name~%3D%5Eapp", token=None).body.decode()
        listed = re.findall(r'<a class="name" href="[^"]+">([^<]+)</a>', first)
        assert listed == names[:PAGE_SIZE]
        following = re.search(r'<a rel="next" href="\?([^"]+)">', first)
        assert following is not None
        query = html.unescape(following[1])
        assert query == "filter=name~%3D%5Eapp&after=app%2Fn199%3A1"
        rest = page(server, f"{HOME}?{query}", token=None).body.decode()
        listed = re.findall(r'<a class="name" href="[^"]+">([^<]+)</a>', rest)
        assert listed == names[PAGE_SIZE:]
        assert 'rel="next"' not in rest
