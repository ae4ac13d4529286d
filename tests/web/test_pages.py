"""The web page in Debian's chromium against a real stack: sign-in, overview, host charts."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.web import data
from tests.web.browser import console, js, ready, shoot, sign_in, text
from tests.web.stack import Stack


def test_wrong_token_is_refused(stack: Stack, browser: webdriver.Chrome) -> None:
    browser.delete_all_cookies()
    browser.get(stack.url + "/")
    ready(browser, "signin")
    browser.find_element(By.ID, "token").send_keys("uty_wrong")
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    assert "not valid" in text(browser, "#signin-error")
    assert browser.get_cookies() == []
    shoot(browser, "signin-refused")


def test_overview_shows_the_host_with_values(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "admin")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-host="{data.HOST}"]')
    cells = {c.get_attribute("data-k"): c.text for c in row.find_elements(By.CSS_SELECTOR, "td[data-k]")}
    print(cells, console(browser))
    shoot(browser, "overview")
