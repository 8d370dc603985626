"""The web console in a real browser: headless Chromium (Debian) through Selenium, against a real `serve` on
loopback with the PagerDuty fake. Each test signs in and does one job an on-call engineer or rule author does:
filter alerts and open one, create and expire a silence, run the playground, retry a dead-lettered job. Every
page is checked with axe-core (bundled by axe-selenium-python, offline) and the browser console must stay free of
errors. Screenshots go to build/screenshots/ (or BRIDGE_TEST_SCREENSHOTS); with BRIDGE_DOCS_SCREENSHOTS=1 the
README's screenshots in docs/console/ are taken again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium, console_errors, screenshot_dir
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import ADMIN_TOKEN, REPO, ROUTING_KEY, TOKEN, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "webhooks" / "datadog" / "examples"
# Every page the console has, with what it must show.
PAGES = [("/ui/overview", "Alerts and pages per hour"), ("/ui/alerts", "newest first"),
         ("/ui/alerts/1", "Decision"), ("/ui/incidents", "Roles requested"), ("/ui/incidents/1", "Timeline"),
         ("/ui/delivery", "Dead-lettered"), ("/ui/silences", "New silence"), ("/ui/rules", "Playground")]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """A bridge with a few alerts in it, the first one's trigger dead-lettered (PagerDuty answered 400)."""
    tmp = tmp_path_factory.mktemp("console")
    with FakePagerDuty(tls=False) as pd:
        pd.fail(400, times=1, api="events", body={"status": "invalid event", "message": "Event object is invalid",
                                                   "errors": ["'routing_key' is invalid"]})
        proc = BridgeProcess(tmp, bridge_env(tmp, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                             PAGERDUTY_EVENTS_URL=pd.url)).start()
        try:
            for name in ("01-checkout-users-triggered.json", "04-payments-api-no-data.json",
                         "02-checkout-customers-warn.json", "05-cloud-cost-increase.json",
                         "06-security-signal.json"):
                r = proc.post("/webhooks/datadog", (EXAMPLES / name).read_bytes(), token=TOKEN)
                assert r.status_code == 202, r.text
            proc.wait_decided()
            wait_for(lambda: proc.get("/api/v1/jobs?state=dead").json()["jobs"], timeout=60)
            yield proc
        finally:
            proc.kill()
        pd.assert_no_invalid_requests()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver
        errors = console_errors(driver)
        assert not errors, f"the browser console has errors: {errors}"


def sign_in(driver: Any, bridge: BridgeProcess, path: str = "/ui/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(bridge.url + path)
    driver.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "nav[aria-label=Console]"))


def expected_only(driver: Any, status: int) -> None:
    """The console's errors so far are only Chromium's note of the page's own error status (a refused form
    answers 4xx with the form again), never a script error; then the log is clear for the next check."""
    errors = console_errors(driver)
    assert errors and all("Failed to load resource" in e["message"] and f"status of {status}" in e["message"]
                          for e in errors), errors


def unlabelled_controls(driver: Any) -> list[str]:
    """Form controls without a label (a <label for>, an enclosing label, or aria-label/labelledby)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !e.getAttribute('aria-labelledby'))
          .map(e => e.outerHTML.slice(0, 120));""")


def flash_text(driver: Any) -> str:
    """The page's confirmation ("" while the next page has not loaded yet)."""
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash"))


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(screenshot_dir() / f"console-{name}.png"))


def accessibility_violations(driver: Any) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the current page, one line each."""
    from axe_selenium_python import Axe

    driver.set_script_timeout(120)  # axe checks a page in a few seconds; a shared CI machine may be slower
    axe = Axe(driver)
    axe.inject()
    result = axe.run(options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}})
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]]


def test_sign_in_shows_nothing_else_before_and_every_page_after(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(bridge.url + "/")
    assert browser.current_url == bridge.url + "/ui/"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text.startswith("Admin token")
    assert accessibility_violations(browser) == []
    shot(browser, "sign-in")
    browser.get(bridge.url + "/ui/alerts")
    assert "/ui/?next=" in browser.current_url and not browser.find_elements(By.ID, "alerts")
    # The webhook token is refused, with a message beside the form.
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "webhook token is not accepted" in wait_for(lambda: browser.find_elements(By.ID, "sign-in-error"))[0].text
    expected_only(browser, 401)
    sign_in(browser, bridge, "/ui/?next=/ui/alerts")
    assert browser.current_url.endswith("/ui/alerts")
    cookie = browser.get_cookie("bridge_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie.get("expiry")
    for path, shown in PAGES:
        browser.get(bridge.url + path)
        assert shown in browser.find_element(By.TAG_NAME, "main").text, path
        assert accessibility_violations(browser) == [], path
        assert unlabelled_controls(browser) == [], path
        shot(browser, path.strip("/").replace("/", "-"))
    # Signing out ends it.
    browser.find_element(By.CSS_SELECTOR, ".signout button").click()
    wait_for(lambda: "Signed out." in flash_text(browser))
    browser.get(bridge.url + "/ui/alerts")
    assert "/ui/?next=" in browser.current_url


def test_filter_alerts_and_open_one(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(browser, bridge, "/ui/?next=/ui/alerts")
    rows = browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr")
    assert len(rows) == 5
    Select(browser.find_element(By.ID, "filter-action")).select_by_value("page")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait_for(lambda: "action=page" in browser.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr")
    assert 0 < len(rows) < 5 and all(r.find_elements(By.TAG_NAME, "td")[5].text == "page" for r in rows)
    shot(browser, "alerts-filtered")
    rows[-1].find_element(By.TAG_NAME, "a").click()
    wait_for(lambda: "/ui/alerts/" in browser.current_url)
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "Decision" in main and "Raw payload" in main and "Normalized alert" in main and "Incident" in main
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text
    shot(browser, "alert-detail")


def test_create_and_expire_a_silence(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, bridge, "/ui/?next=/ui/silences")
    browser.find_element(By.ID, "matchers").send_keys("service=checkout")
    browser.find_element(By.ID, "owner").send_keys("alice@example.com")
    browser.find_element(By.ID, "reason").send_keys("checkout deploy")
    browser.find_element(By.CSS_SELECTOR, "button[value=preview]").click()
    preview = wait_for(lambda: browser.find_elements(By.ID, "preview"))
    assert "Would have matched" in preview[0].text and "checkout" in preview[0].text
    shot(browser, "silence-preview")
    browser.find_element(By.CSS_SELECTOR, "button[value=create]").click()
    wait_for(lambda: "created" in flash_text(browser))
    [silence] = [s for s in bridge.get("/api/v1/silences").json()["silences"] if s["reason"] == "checkout deploy"]
    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Expire silence {silence['id']}']").click()
    wait_for(lambda: "expired" in flash_text(browser))
    assert "checkout deploy" not in str(bridge.get("/api/v1/silences").json()["silences"])
    actions = [a["action"] for a in bridge.get("/api/v1/audit?action=silence.").json()["audit"]]
    assert actions[:2] == ["silence.expire", "silence.create"]
    # Bad input re-renders the form with a message and what was typed.
    browser.find_element(By.ID, "matchers").send_keys("not a matcher")
    browser.find_element(By.ID, "owner").send_keys("alice")
    browser.find_element(By.ID, "reason").send_keys("x")
    browser.find_element(By.CSS_SELECTOR, "button[value=create]").click()
    assert wait_for(lambda: browser.find_elements(By.ID, "silence-error"))[0].text
    assert browser.find_element(By.ID, "matchers").get_attribute("value") == "not a matcher"
    expected_only(browser, 400)


def test_the_playground_explains_a_payload(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(browser, bridge, "/ui/?next=/ui/rules")
    Select(browser.find_element(By.ID, "source")).select_by_value("datadog")
    payload = (EXAMPLES / "01-checkout-users-triggered.json").read_text()
    # Set the textarea's value directly: typing 2 KB key by key is slow and the text is the same.
    browser.execute_script("document.getElementById('payload').value = arguments[0]", payload)
    browser.find_element(By.CSS_SELECTOR, "#playground-form button[type=submit]").click()
    explanation = wait_for(lambda: browser.find_elements(By.ID, "explanation"))[0].text
    assert "decision: page" in explanation and "datadog-monitor" in explanation
    shot(browser, "playground")


def test_retry_a_dead_lettered_job(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    [dead] = bridge.get("/api/v1/jobs?state=dead").json()["jobs"]
    sign_in(browser, bridge, "/ui/?next=/ui/delivery")
    row = browser.find_element(By.ID, f"job-{dead['id']}")
    assert "invalid" in row.text.lower()  # the provider's last answer
    assert "events per minute" in browser.find_element(By.ID, "queue-depth").text
    row.find_element(By.CSS_SELECTOR, f"button[aria-label='Retry job {dead['id']}']").click()
    wait_for(lambda: "sent again" in flash_text(browser))
    wait_for(lambda: bridge.get("/api/v1/jobs?limit=1000").json()["jobs"] and next(
        j for j in bridge.get("/api/v1/jobs?limit=1000").json()["jobs"] if j["id"] == dead["id"])["state"]
        == "delivered", timeout=60)
    [audit] = bridge.get("/api/v1/audit?action=job.retry").json()["audit"]
    assert audit["target"] == str(dead["id"]) and audit["actor"].startswith("console from ")


def test_keyboard_reaches_every_control_in_order(bridge: BridgeProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, bridge, "/ui/?next=/ui/silences")
    controls = [e for e in browser.find_elements(By.CSS_SELECTOR, "a[href], button, input:not([type=hidden]), "
                                                                  "select, textarea") if e.is_displayed()]
    reached = []
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(len(controls) + 5):
        active = browser.switch_to.active_element
        if active in reached:
            break
        reached.append(active)
        active.send_keys(Keys.TAB)
    missing = [(c.tag_name, c.get_attribute("id") or c.text) for c in controls if c not in reached]
    assert not missing, f"not reachable with Tab: {missing}"
    # In document order: the skip link first, then the navigation, then the form.
    assert reached[0].get_attribute("class") == "skip"
    assert [c for c in reached if c in controls] == controls


def test_the_readme_screenshots_are_taken(bridge: BridgeProcess) -> None:
    """The README's three pictures of the console, taken on every run into the screenshots folder (CI keeps it);
    with BRIDGE_DOCS_SCREENSHOTS=1 they replace docs/console/*.png too."""
    from selenium.webdriver.common.by import By

    folder = screenshot_dir() / "readme"
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder]
    if os.environ.get("BRIDGE_DOCS_SCREENSHOTS") == "1":
        targets.append(REPO / "docs" / "console")
    with chromium(width=1280, height=820) as driver:
        sign_in(driver, bridge, "/ui/?next=/ui/overview")
        for path, name in (("/ui/overview", "overview"), ("/ui/alerts", "alerts"), ("/ui/incidents/1", "incident")):
            driver.get(bridge.url + path)
            assert driver.find_element(By.TAG_NAME, "h1").text, f"{path} has no heading"
            for target in targets:
                driver.save_screenshot(str(target / f"{name}.png"))
    for name in ("overview", "alerts", "incident"):
        png = (folder / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
