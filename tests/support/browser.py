"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, for the console's browser tests.

The driver is passed explicitly (/usr/bin/chromedriver, or BRIDGE_TEST_CHROMEDRIVER) and Selenium Manager is told
to stay offline (SE_OFFLINE=true): no test downloads a browser or a driver. When either is missing the test skips
with how to install them, except under `CI=true`, where it fails (scripts/test installs them as root).

Screenshots go to BRIDGE_TEST_SCREENSHOTS, else build/screenshots/ in the checkout (CI keeps that folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import REPO

INSTALL = "apt-get install chromium chromium-driver (scripts/test does it when run as root)"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def binaries() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip (fail under CI=true) saying how to get them."""
    driver = os.environ.get("BRIDGE_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    browser = os.environ.get("BRIDGE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    for path, what in ((browser, "chromium"), (driver, "chromedriver")):
        if not Path(path).is_file():
            _missing(f"{what} is not installed: {INSTALL}")
    return browser, driver


def screenshot_dir() -> Path:
    """Where screenshots go (created)."""
    folder = Path(os.environ.get("BRIDGE_TEST_SCREENSHOTS") or REPO / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver whose browser console log can be read (`goog:loggingPrefs`)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed: pip install -e '.[test]'")
        raise
    browser, driver_path = binaries()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never fetches anything
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-features=Translate,OptimizationHints,MediaRouter"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's errors (level SEVERE) since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
