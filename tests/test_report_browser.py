"""report.html in a real browser (headless Chromium driven by Selenium): switch runs, open a conversation (a
self-play one and a replayed one), the plots render as non-empty SVG, and the page logs no console error.
Slow tier. Needs Debian's chromium and chromium-driver: `USERLM_BROWSER_TESTS=1 bash install.sh`."""

from __future__ import annotations

import shutil

import pytest
from report_runs import NASTY, replay_run, self_play_run

pytestmark = pytest.mark.slow

HOW = "install them with `USERLM_BROWSER_TESTS=1 bash install.sh`"


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed (the dev extra: pip install -e '.[dev]'); {HOW}")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip(f"no headless browser: chromium and chromedriver are not on PATH; {HOW}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read back with get_log
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_report_in_a_real_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from evaluators.report import write_report

    _, page = write_report([str(self_play_run(tmp_path)), str(replay_run(tmp_path))], str(tmp_path / "report"))
    browser.get(page.resolve().as_uri())
    assert _errors(browser) == [], "the page logged errors while loading"
    css = lambda selector: browser.find_elements(By.CSS_SELECTOR, selector)
    # Plots: SVG drawn with marks, and with a size on the page (rendered, not just in the DOM).
    for selector, mark, least in (("#plot-turn-length svg", "polyline", 3), ("#plot-p-ai svg", "polyline", 3),
                                  ("#svg-stop-reasons", "rect", 3), ("#plot-conversation-length svg", "polyline", 3),
                                  ("#svg-scenarios", "circle", 3)):
        svgs = css(selector)
        assert svgs, f"no {selector}"
        assert len(svgs[0].find_elements(By.CSS_SELECTOR, mark)) >= least, f"{selector}: fewer than {least} {mark}"
        size = svgs[0].size
        assert size["width"] > 100 and size["height"] > 50, f"{selector} not rendered: {size}"
    Select(css("#scenario-measure")[0]).select_by_value("mean_user_turns")  # the per-scenario plot redraws
    assert len(css("#svg-scenarios circle")) >= 3
    # The self-play run: its conversations, one opened with P(AI) per user turn; a turn's markup stays text.
    runs = Select(css("#run-select")[0])
    runs.select_by_index(0)
    items = css("#conv-list .conv-item")
    assert len(items) == 4
    items[0].click()
    panel = css("#conversation")[0]
    assert NASTY in panel.text and browser.execute_script("return window.__pwned") is None
    assert [b.text for b in panel.find_elements(By.CSS_SELECTOR, ".p-ai")] == ["P(AI) 0.90", "P(AI) 0.40"]
    # Switch to the replay run: the model's turn beside the person's, where each ended.
    runs.select_by_index(1)
    items = css("#conv-list .conv-item")
    assert [i.text for i in items] == ["sharegpt-42 (replayed, 2)"]
    assert css("#conversation")[0].text == ""  # switching runs closes the open conversation
    items[0].click()
    pairs = css("#conversation .pair")
    assert len(pairs) == 3
    assert "egg boiling how" in pairs[0].text and "how do I boil an egg" in pairs[0].text
    assert "(ended the conversation here)" in pairs[1].text and "how long" in pairs[1].text
    assert "thanks!" in pairs[2].text and "(the person stopped here)" in pairs[2].text
    assert "P(AI) 0.35" in pairs[0].text
    assert _errors(browser) == [], "the page logged errors"
