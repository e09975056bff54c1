"""The app in a real headless browser (Debian chromium, never `playwright install`)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from apphelpers import tiny_app  # noqa: F401  (a fixture)

CHROMIUM = Path("/usr/bin/chromium")
DECODED_IMG = "#decoded img"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_generate_shows_the_decoded_image(browser, tiny_app):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(tiny_app, timeout=60_000)
    page.get_by_role("button", name="Generate").click(timeout=30_000)
    page.wait_for_selector(DECODED_IMG, timeout=60_000)
    page.wait_for_function("sel => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0 }",
                           arg=DECODED_IMG, timeout=60_000)
    src = page.locator(DECODED_IMG).first.get_attribute("src")
    assert src and src.startswith(("http", "data:image", "blob:"))
    page.wait_for_function("() => document.querySelector('#stats').innerText.includes('step 64/64')", timeout=60_000)
    page.close()
