"""The auditors' pages in a real headless Chromium (Debian's, driven by
Playwright for Python; no browser is downloaded), against the real
`imageledger serve` on SQLite and PostgreSQL.

An auditor logs in, lists, filters, follows a name to its timeline, a digest
to its `where` page, and runs verify; a page must log no console error and
run no script it was not given. Each page's screenshot is saved under the
test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import descriptor, digest
from imageledger import ImageStore
from serving import READ, serving, write_tokens

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("IMAGELEDGER_TEST_CHROMIUM", "/usr/bin/chromium"))
# Headless, and quiet: without these Chromium reaches out to the network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, for the module."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser tests need {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="imageledger-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def filtered(given: str) -> Any:
    """A URL test: the images page with the filter `given`."""
    return lambda url: parse_qs(urlsplit(url).query).get("filter") == [given]


class Watched:
    """A page whose console errors, uncaught errors and dialogs are kept."""

    def __init__(self, context: Any, folder: Path) -> None:
        context.clear_cookies()
        self.page = context.new_page()
        self.folder = folder
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str) -> Path:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def texts(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]


@pytest.fixture
def watched(browser: Any, tmp_path: Path) -> Iterator[Watched]:
    watched = Watched(browser, tmp_path)
    try:
        yield watched
    finally:
        watched.page.close()


def test_an_auditor_lists_filters_follows_a_timeline_and_a_digest_and_verifies(
    location: str, tmp_path: Path, watched: Watched
) -> None:
    with ImageStore.open(location) as store:
        store.register("app:prod", descriptor(1), {"team": "web"}, actor="alice")
        store.register("app:dev", descriptor(2), actor="bob")
        store.register("app:prod", descriptor(2), actor="bob", reason="release 2")
        store.register("db:prod", descriptor(9), {"team": "data"}, actor="dora")
        store.register("app:prod", descriptor(3), actor="carol", reason="release 3")
        store.delete("app:prod", actor="carol", reason="withdrawn")
        store.register("app:prod", descriptor(2), actor="carol", immutable=True)
    page = watched.page
    token_file = write_tokens(tmp_path / "tokens")
    with serving(location, token_file=token_file) as server:
        base = server.url
        page.goto(f"{base}/ui/login?next=/ui/namespaces/default/images")
        page.fill("input[name=token]", READ)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/namespaces/default/images")
        assert watched.texts("#images a.name") == ["app:dev", "app:prod", "db:prod"]
        assert page.inner_text("header .who") == "auditor"
        watched.shot("images")

        page.fill("input[name=filter]", "labels.team==web,name~=prod")
        page.click("form.filter button")
        page.wait_for_url(filtered("labels.team==web,name~=prod"))
        assert watched.texts("#images a.name") == []  # app:prod lost its label
        page.fill("input[name=filter]", "name~=prod")
        page.click("form.filter button")
        page.wait_for_url(filtered("name~=prod"))
        assert watched.texts("#images a.name") == ["app:prod", "db:prod"]
        watched.shot("images-filtered")

        page.click("#images a.name >> text=app:prod")
        page.wait_for_url(f"{base}/ui/namespaces/default/history/app:prod")
        assert page.inner_text("h1") == "app:prod in default"
        svg = page.locator("svg#timeline")
        assert svg.is_visible()
        bands = svg.locator("g.band")
        assert [bands.nth(i).get_attribute("data-digest") for i in range(3)] == [
            digest(1),
            digest(2),
            digest(3),
        ]
        assert bands.count() == 3
        # digest 2 is drawn twice: from the retarget to 3, and since the re-register.
        assert bands.nth(1).locator("rect.bar").count() == 2
        assert bands.nth(1).locator("rect.bar.open.immutable").count() == 1
        assert svg.locator(".mark.registered").count() == 2
        assert svg.locator(".mark.retargeted").count() == 2
        assert svg.locator(".mark.deleted").count() == 1
        assert svg.locator(".mark.immutable").count() == 1
        assert (
            svg.locator("text.label").all_text_contents() == ["sha256:000000000000"] * 3
        )
        assert watched.texts("#events td.position") == ["1", "3", "5", "6", "7"]
        assert watched.texts("#events td.reason") == [
            "",
            "release 2",
            "release 3",
            "withdrawn",
            "",
        ]
        watched.shot("timeline")

        page.click(f"#events a.digest >> text={digest(2)} >> nth=0")
        page.wait_for_url(f"{base}/ui/where/{digest(2)}")
        rows = page.locator("#where tbody tr")
        assert [rows.nth(i).locator("td").all_inner_texts()[:2] for i in range(3)] == [
            ["default", "app:dev"],
            ["default", "app:prod"],
            ["default", "app:prod"],
        ]
        assert watched.texts("#where tbody td:nth-child(4)").count("now") == 2
        watched.shot("where")

        page.click("header nav a >> text=Verify")
        page.wait_for_url(f"{base}/ui/verify")
        checkpoint = page.inner_text("#checkpoint")
        assert checkpoint.startswith("7:sha256:")
        page.click("#run")
        page.wait_for_selector("#result")
        assert page.inner_text("#result h2") == "Verified"
        assert page.inner_text("#events") == "7"
        watched.shot("verify")

        page.click("header nav a >> text=Log")
        page.wait_for_url(f"{base}/ui/log")
        page.select_option("select[name=kind]", "deleted")
        page.click("form.log button")
        page.wait_for_url("**/ui/log?*")
        assert watched.texts("#events td.position") == ["6"]
        watched.shot("log")

        page.goto(f"{base}/ui/diff?a=2&b=7")
        assert watched.texts("#diff tbody td:first-child") == [
            "retargeted",
            "added",
        ]
        watched.shot("diff")
    assert watched.errors == []
    assert watched.dialogs == []
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "diff.png",
        "images-filtered.png",
        "images.png",
        "log.png",
        "timeline.png",
        "verify.png",
        "where.png",
    ]


HOSTILE = {
    "<script>alert(1)</script>": "<img src=x onerror=alert(2)>",
    "k": '"><svg onload=alert(3)>',
}


def test_hostile_labels_reasons_and_names_render_as_text_and_run_no_script(
    location: str, tmp_path: Path, watched: Watched
) -> None:
    with ImageStore.open(location) as store:
        store.register(
            "app:prod",
            descriptor(1),
            HOSTILE,
            actor="mallory\u202egpj.exe",
            reason="<script>alert(4)</script>",
        )
    page = watched.page
    with serving(location) as server:
        base = server.url
        page.goto(f"{base}/ui/namespaces/default/history/app:prod")
        assert watched.texts("#events td.actor") == ["mallory\\u202egpj.exe"]
        assert watched.texts("#events td.reason") == ["<script>alert(4)</script>"]
        assert watched.texts("#events span.label") == [
            "<script>alert(1)</script>=<img src=x onerror=alert(2)>",
            'k="><svg onload=alert(3)>',
        ]
        assert page.locator("script, img").count() == 0
        assert page.locator("svg").count() == 1  # the timeline's own
        watched.shot("hostile-timeline")
        page.goto(f"{base}/ui/namespaces/default/images")
        assert "<img src=x onerror=alert(2)>" in page.inner_text("#images")
        hostile_name = "<img src=x onerror=alert(5)>"
        page.goto(f"{base}/ui/namespaces/default/history/{hostile_name}")
        assert "<img src=x onerror=alert(5)>" in page.inner_text("#error")
        page.goto(f"{base}/ui/namespaces/<svg onload=alert(6)>/images")
        assert "<svg onload=alert(6)>" in page.inner_text("#error")
        watched.shot("hostile-name")
        # Nothing became markup: no script, image or foreign svg in any page.
        assert page.locator("script, img, svg").count() == 0
        assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert watched.dialogs == []
    # The error pages answer 400 (a console line of their own); nothing else.
    assert [e for e in watched.errors if "status of 400" not in e] == []
