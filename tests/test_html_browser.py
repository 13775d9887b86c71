"""Open a generated report in headless Chromium: every plot renders and the console stays clean."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.reports import ReportSection, write_report
from bench.reports.plots import new_figure
from tests.test_reports_support import full_results

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture()
def browser(tmp_path: Path):
    if not CHROMIUM.exists():
        pytest.skip(f"headless browser test needs Chromium at {CHROMIUM} (Debian package 'chromium')")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_report_page_renders_in_chromium(browser, tmp_path: Path) -> None:
    figure = new_figure(3, 2)
    figure.subplots().bar(["a", "b"], [1.0, 2.0])
    page = write_report(
        full_results(),
        {"notes": ["space X could not load: weights missing"], "device": {"cpu": "test"}},
        tmp_path / "run",
        extra_sections=[
            ReportSection("Extra analysis", "<p>added by another module</p>", [("bars", figure)])
        ],
    )
    browser.get(page.resolve().as_uri())
    assert browser.title.startswith("fdbench report")
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    copy_to = os.environ.get("FDBENCH_KEEP_SCREENSHOT")
    if copy_to:
        shutil.copy(screenshot, copy_to)

    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(images) == 7
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"plot {alt!r} did not render"

    headings = browser.execute_script(
        "return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);"
    )
    assert headings == [
        "What the numbers mean",
        "Tables",
        "Plots",
        "Extra analysis",
        "Problems",
        "Run manifest",
    ]
    details_open = browser.execute_script("return document.querySelector('details').open;")
    assert details_open is False  # the manifest starts collapsed

    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], f"console errors: {severe}"

    # negative control: the same checks do catch a broken image and a script error
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="missing.png"><script>undefinedCall()</script></body></html>')
    browser.get(broken.resolve().as_uri())
    assert browser.execute_script("return document.images[0].naturalWidth;") == 0
    assert any(entry["level"] == "SEVERE" for entry in browser.get_log("browser"))
