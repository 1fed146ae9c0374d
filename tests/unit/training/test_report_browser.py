"""The report in a real browser: headless Chromium (Debian's, `make browser`) driven by playwright.

The page must load from a file with no console error, no uncaught exception and no network request, draw
its plots, let a reader pick a patient, and give a screenshot.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Request, sync_playwright

from tests.unit.training.conftest import JobRun

pytestmark = pytest.mark.slow


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make browser` installs Debian's chromium"
    return path


def test_the_report_renders_in_headless_chromium_without_errors(job_run: JobRun, tmp_path: Path) -> None:
    report = job_run.output / "report.html"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        def on_request(request: Request) -> None:
            if not request.url.startswith(("file://", "data:", "blob:", "about:")):
                requests.append(request.url)

        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", on_request)
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        plots = page.locator(".js-plotly-plot").count()

        # Every section rendered something: a plot, a table or a list
        empty = page.evaluate(
            """() => Array.from(document.querySelectorAll("section")).filter(
                 (s) => !s.querySelector(".js-plotly-plot, table, ul, img")).map((s) => s.id)"""
        )
        # A reader picks another patient by typing its id: the detail panel follows
        options = page.locator("#patient-ids option").evaluate_all("(all) => all.map((o) => o.value)")
        first = page.locator("#patient-detail").inner_text()
        picture = page.evaluate(
            "() => Array.from(document.querySelectorAll('#patient-detail img')).map((i) => i.naturalWidth)"
        )
        page.fill("#patient-search", options[-1])
        page.wait_for_selector("#patient-detail .measurement-plot .main-svg", timeout=30_000)
        detail = page.locator("#patient-detail").text_content() or ""  # also inside the closed <details>

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()

    assert errors == []
    assert requests == []
    assert plots >= 4  # ROC curves, ablation, importance, cohort/prevalence
    assert empty == [], empty
    assert len(options) > 1
    assert picture  # the embedded overlay ...
    assert all(width > 0 for width in picture)  # ... decodes
    # The fixture's patient pt-000i has "Systolic BP <b>140 + i</b>" (markup shown as text, never run)
    assert f"Systolic BP <b>{140 + int(options[-1].removeprefix('pt-'))}</b>" in detail
    assert detail != first
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
