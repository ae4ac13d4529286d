"""What the browser tests do to a page: open it, wait until it says it is ready, sign in."""

from __future__ import annotations

from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.web.stack import Stack, artifacts

WAIT_S = 30


def ready(driver: webdriver.Chrome, page: str, within: float = WAIT_S) -> None:
    """Wait until the page marks itself ready (body data-ready), failing on a page error."""

    def done(d: webdriver.Chrome) -> bool:
        return bool(d.execute_script("return document.body.dataset.ready") == page)

    WebDriverWait(driver, within).until(done, f"the {page} page did not get ready")


def text(driver: webdriver.Chrome, css: str, within: float = WAIT_S) -> str:
    """The text of the first element matching ``css`` once it has some."""

    def found(d: webdriver.Chrome) -> str:
        elements = d.find_elements(By.CSS_SELECTOR, css)
        return elements[0].text.strip() if elements else ""

    value: str = WebDriverWait(
        driver, within, ignored_exceptions=[StaleElementReferenceException]
    ).until(found, f"no text in {css}")
    return value


def console(driver: webdriver.Chrome) -> list[str]:
    """The page's console errors since the last call (uncaught exceptions among them)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in entries if e["level"] == "SEVERE"]


def js(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def chart(driver: webdriver.Chrome, title: str) -> dict[str, Any]:
    """The labels of a chart's series and the data its uPlot holds: [x, series...]."""
    found: dict[str, Any] = driver.execute_script(
        """
        const c = window.unity.charts.find((c) => c.title === arguments[0]);
        return c && {labels: c.u.series.slice(1).map((s) => s.label), data: c.u.data};
        """,
        title,
    )
    assert found, f"no chart titled {title!r}"
    return found


def sign_in(driver: webdriver.Chrome, stack: Stack, scope: str) -> None:
    driver.get(stack.url + "/")
    driver.delete_all_cookies()
    driver.get(stack.url + "/")
    ready(driver, "signin")
    driver.find_element(By.ID, "token").send_keys(stack.tokens[scope])
    driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    ready(driver, "overview")


def shoot(driver: webdriver.Chrome, name: str) -> None:
    driver.save_screenshot(str(artifacts() / f"{name}.png"))
