"""Driving the page in a real browser: Debian's chromium and chromedriver through selenium, headless.

Used by ``swapbench ui --screenshot`` and by the browser tests. Nothing is downloaded: selenium is
pointed at the chromedriver on ``PATH`` (selenium-manager, which would fetch a driver, is never run).
"""

from __future__ import annotations

import base64
import io
import shutil
import time
from pathlib import Path

import numpy as np

from swapbench.errors import UserError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str, str]:
    """(browser binary, chromedriver) from PATH, or a user error saying how to install them."""
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise UserError("no chromium and chromedriver on PATH; install them (Debian: `apt-get install -y chromium "
                        "chromium-driver`)")
    return browser, driver


def chromium(width: int = 1400, height: int = 1100):
    """A headless chromium WebDriver (the caller quits it)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("selenium is not installed; `pip install -e \".[ui]\"` (or \".[test]\")") from None
    browser, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--hide-scrollbars"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def wait_for(driver, condition: str, timeout: float = 60.0, what: str = "the page") -> object:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({condition});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: `{condition}` still false after {timeout} s")
        time.sleep(0.05)


def wait_idle(driver, timeout: float = 60.0) -> None:
    """Until the page has no request in flight (nor one queued)."""
    wait_for(driver, "window.swapbench && window.swapbench.ready && window.swapbench.pending === 0", timeout, "idle")


def image_array(driver, element_id: str) -> np.ndarray:
    """The pixels (H, W, 3 uint8) of an <img> whose src is a PNG data URL."""
    from PIL import Image

    src = driver.find_element("id", element_id).get_attribute("src")
    if not src or not src.startswith("data:image/png;base64,"):
        raise AssertionError(f"#{element_id} shows no PNG data URL (src {src[:60] if src else src!r})")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        return np.asarray(im.convert("RGB"))


def paint_stroke(driver, points: list[tuple[float, float]]) -> None:
    """Drag the mouse over the region canvas through ``points``, given as fractions of its side."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "paint")
    w, h = canvas.size["width"], canvas.size["height"]
    offset = lambda p: (round((p[0] - 0.5) * w), round((p[1] - 0.5) * h))  # noqa: E731 (from the canvas centre)
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *offset(points[0])).click_and_hold()
    for p in points[1:]:
        chain = chain.move_to_element_with_offset(canvas, *offset(p))
    chain.release().perform()


def screenshot(url: str, out: Path, a: int = 0, b: int = 5, grid: int = 3) -> Path:
    """A screenshot of the page at ``url`` (a model already loaded) after a swap of gallery images
    ``a`` and ``b``, a brush stroke of B's structure over the left of A, and a ``grid`` x ``grid`` swap grid."""
    driver = chromium(1400, 1500)
    try:
        driver.get(url)
        wait_idle(driver)
        driver.find_element("id", "gallery").click()
        wait_for(driver, "document.querySelectorAll('#images .thumb').length > 0", what="the gallery")
        thumbs = driver.find_elements("css selector", "#images .thumb")
        if len(thumbs) <= max(a, b):
            raise UserError(f"the gallery has {len(thumbs)} images; pick images below that")
        thumbs[a].find_element("css selector", ".pick-a").click()
        driver.find_elements("css selector", "#images .thumb")[b].find_element("css selector", ".pick-b").click()
        wait_idle(driver)
        driver.execute_script("document.getElementById('brush').value = 10")
        paint_stroke(driver, [(0.15, 0.2), (0.3, 0.35), (0.3, 0.6), (0.2, 0.85)])
        wait_idle(driver)
        for i, t in enumerate(driver.find_elements("css selector", "#images .thumb")[:2 * grid]):
            t.find_element("css selector", ".grid-row" if i < grid else ".grid-col").click()
        driver.find_element("id", "make-grid").click()
        wait_idle(driver)
        wait_for(driver, "document.getElementById('grid-result').naturalWidth > 0", what="the grid")
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    return out
