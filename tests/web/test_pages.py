"""The web page in Debian's chromium against a real stack (API on a port, ingest, PostgreSQL,
Valkey, NATS): sign-in, overview, host charts from stored points, live mode, plugins with
the config editor, explore, alerts, sign-out. Screenshots of each page go to artifacts()."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.web import data
from tests.web.browser import WAIT_S, chart, console, ready, shoot, sign_in, text
from tests.web.stack import Stack
from unity.schemas import MetricBatch, Sample

SCHEMA = {
    "type": "object",
    "properties": {
        "interval_ms": {"type": "integer", "minimum": 100},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "targets": {"type": "array", "items": {"type": "string"}},
        "verbose": {"type": "boolean"},
    },
    "required": ["interval_ms"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tuner(stack: Stack) -> int:
    """A registered plugin with a JSON Schema for its config."""
    body = {
        "host": data.HOST,
        "plugin": "tuner",
        "description": "a plugin with a config to edit",
        "config_schema": SCHEMA,
        "config": {"interval_ms": 1000, "mode": "fast", "targets": ["a", "b"], "verbose": False},
    }
    headers = {"Authorization": f"Bearer {stack.tokens['admin']}"}
    resp = httpx.post(f"{stack.url}/api/v1/plugins", json=body, headers=headers, timeout=20)
    assert resp.status_code in (200, 201), resp.text
    plugin_id: int = resp.json()["id"]
    return plugin_id


@pytest.fixture(scope="module")
def alerting(stack: Stack) -> int:
    """A rule made through the API and one firing alert of it, stored as the evaluator
    (`unity alerts`, not run here) stores one; returns the alert's id."""
    rule = {
        "name": "disk_full",
        "expr": "disk_used_percent",
        "op": ">",
        "threshold": 30,
        "severity": "critical",
    }
    headers = {"Authorization": f"Bearer {stack.tokens['admin']}"}
    resp = httpx.post(f"{stack.url}/api/v1/alerts/rules", json=rule, headers=headers, timeout=20)
    assert resp.status_code in (200, 201), resp.text

    async def insert() -> int:
        alert_id: int = await stack.pool.fetchval(
            "INSERT INTO alerts (rule_id, state, value, started_at, labels, rule, fingerprint,"
            " episode, severity, unit, message, fired_at)"
            " SELECT id, 'firing', 40, now() - interval '5 minutes', $1::jsonb, name, 'fp-web',"
            " 1, 'critical', 'percent', 'disk / is 40 % full', now() FROM alert_rules"
            " WHERE name = 'disk_full' RETURNING id",
            f'{{"host": "{data.HOST}", "mount": "/"}}',
        )
        return alert_id

    return stack.call(insert())


def _drawn(browser: webdriver.Chrome, title: str, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the chart's canvas have about the colour of its first line."""
    count: int = browser.execute_script(
        """
        const [title, [r, g, b]] = arguments;
        const c = window.unity.charts.find((c) => c.title === title).box.querySelector("canvas");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0 && Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40
              && Math.abs(d[i + 2] - b) < 40) n++;
        }
        return n;
        """,
        title,
        list(rgb),
    )
    return count


def test_wrong_token_is_refused(stack: Stack, browser: webdriver.Chrome) -> None:
    browser.get(stack.url + "/")
    browser.delete_all_cookies()
    browser.get(stack.url + "/")
    ready(browser, "signin")
    browser.find_element(By.ID, "token").send_keys("uty_wrong")
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    assert "not valid" in text(browser, "#signin-error")
    assert browser.get_cookies() == []
    assert browser.find_element(By.ID, "nav").is_displayed() is False
    shoot(browser, "signin-refused")


def test_overview_shows_the_host_with_values(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "admin")
    # The page keeps no token: not in its URL, not in its storage.
    assert stack.tokens["admin"] not in browser.current_url
    storage = browser.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
    )
    assert stack.tokens["admin"] not in storage
    cookie = browser.get_cookie("unity_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""

    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-host="{data.HOST}"]')
    cells = {
        c.get_attribute("data-k"): c.text for c in row.find_elements(By.CSS_SELECTOR, "td[data-k]")
    }
    last = data.memory_used(stack.stored_until) / (16 * data.GIB) * 100
    assert cells == {
        "cpu": "30 %",  # user 20 % + system 10 %; idle and iowait are not busy
        "mem": f"{last:.0f} %",
        "disk": "40 %",
        "net": "122 KiB/s / 24.4 KiB/s",  # 125 000 and 25 000 bytes/s
        "temp": "52.5 °C",
        "load": cells["load"],
        "alerts": "none",
    }
    assert 1.0 <= float(cells["load"]) <= 1.5
    assert row.get_attribute("data-status") == "up"
    assert row.find_element(By.CSS_SELECTOR, ".spark canvas")
    shoot(browser, "overview")

    box = browser.find_element(By.ID, "filter")
    box.send_keys("no-such-host")
    WebDriverWait(browser, WAIT_S).until(lambda d: not row.is_displayed())
    assert browser.find_element(By.ID, "count").text == "0 of 1 hosts"
    box.clear()
    box.send_keys("web")
    WebDriverWait(browser, WAIT_S).until(lambda d: row.is_displayed())
    browser.find_element(By.CSS_SELECTOR, 'th[data-column="cpu"] button').click()
    sorted_by = browser.find_element(By.CSS_SELECTOR, 'th[data-column="cpu"]')
    assert sorted_by.get_attribute("aria-sort") in ("ascending", "descending")
    # Nothing failed on the page, and the Content-Security-Policy refused nothing it uses: the
    # only errors are the 401s of the session checks before signing in, and event streams cut
    # by leaving a page.
    errors = console(browser)
    assert all(
        ("/api/v1/session" in m and " 401 " in m) or ("/api/v1/stream" in m and "net::ERR_" in m)
        for m in errors
    ), errors


def test_host_page_charts_draw_the_stored_points(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "admin")
    browser.find_element(By.LINK_TEXT, data.HOST).click()
    ready(browser, "host")
    assert urlparse(browser.current_url).path == f"/hosts/{data.HOST}"
    titles = browser.execute_script("return window.unity.charts.map((c) => c.title)")
    assert {"CPU", "Load", "Memory", "Disk /", "Network eth0", "Temperatures"} <= set(titles)

    memory = chart(browser, "Memory")
    used = memory["labels"].index("used")
    points = [
        (t, v)
        for t, v in zip(memory["data"][0], memory["data"][used + 1], strict=True)
        if v is not None
    ]
    assert len(points) >= 300  # a point every 10 s over the hour
    # Each 10 s bucket holds the one sample stored within it.
    for t, v in points:
        taken = t + (stack.stored_until - t) % data.STEP_S
        assert abs(v - data.memory_used(taken)) < 1, (t, v)
    assert _drawn(browser, "Memory", (0x3B, 0x82, 0xF6)) > 200

    cpu = chart(browser, "CPU")
    assert sorted(cpu["labels"]) == ["iowait", "system", "user"]
    top = [v for v in cpu["data"][1] if v is not None]  # the stacked total of busy modes
    assert top and all(abs(v - 32.0) < 0.01 for v in top)
    net = chart(browser, "Network eth0")
    rx = [v for v in net["data"][1 + net["labels"].index("in")] if v is not None]
    assert rx and all(abs(v - data.RX) < 1 for v in rx)
    shoot(browser, "host")

    browser.find_element(By.CSS_SELECTOR, 'button[data-range="6h"]').click()
    ready(browser, "host")
    assert parse_qs(urlparse(browser.current_url).query)["range"] == ["6h"]

    # A custom range from the two date fields.
    browser.execute_script(
        """
        const form = document.querySelector(".range .custom");
        form.elements.from.value = arguments[0];
        form.elements.to.value = arguments[1];
        """,
        "2026-01-02T03:04",
        "2026-01-02T05:04",
    )
    browser.find_element(By.XPATH, "//button[text()='Apply']").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "from=" in d.current_url)
    ready(browser, "host")
    query = parse_qs(urlparse(browser.current_url).query)
    assert float(query["to"][0]) - float(query["from"][0]) == 7200
    assert "range" not in query
    browser.back()
    ready(browser, "host")
    assert parse_qs(urlparse(browser.current_url).query)["range"] == ["6h"]

    # Dragging across a chart zooms: the range lands in the URL, so the view can be shared.
    over = browser.find_element(By.CSS_SELECTOR, 'figure[data-panel="memory:"] .u-over')
    width = over.size["width"]
    ActionChains(browser).move_to_element_with_offset(over, -width // 4, 0).click_and_hold().pause(
        0.1
    ).move_by_offset(width // 2, 0).pause(0.1).release().perform()
    WebDriverWait(browser, WAIT_S).until(lambda d: "from=" in d.current_url)
    ready(browser, "host")
    query = parse_qs(urlparse(browser.current_url).query)
    span = float(query["to"][0]) - float(query["from"][0])
    assert 0 < span < 6 * 3600 * 0.75
    assert chart(browser, "Memory")["data"][0]


def test_live_mode_appends_points_from_the_stream(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "read")
    browser.get(f"{stack.url}/hosts/{data.HOST}?range=1h&live=1")
    ready(browser, "host")
    assert browser.find_element(By.ID, "live").is_selected()
    before = chart(browser, "Memory")["data"][0][-1]
    sent: dict[float, float] = {}
    arrived: list[Any] = []
    for k in range(30):
        t = time.time()
        stack.call(stack.store(data.at(t, 100_000 + k)))
        sent[t] = data.memory_used(t)
        time.sleep(1)
        memory = chart(browser, "Memory")
        used = memory["labels"].index("used")
        arrived = [
            (x, v)
            for x, v in zip(memory["data"][0], memory["data"][used + 1], strict=True)
            if x > before and v is not None
        ]
        if len(arrived) >= 2:
            break
    assert len(arrived) >= 2, "no live points arrived"
    for x, v in arrived:
        # The page reads times to the millisecond.
        (expected,) = (value for t, value in sent.items() if abs(t - x) < 0.002)
        assert abs(v - expected) < 1
    # Counters become rates between consecutive live samples: 125 000 bytes/s in.
    net = chart(browser, "Network eth0")
    latest = net["data"][1 + net["labels"].index("in")][-1]
    assert latest == pytest.approx(data.RX, rel=0.01)
    shoot(browser, "host-live")

    # The overview follows the stream too: a new memory reading replaces the cell's value.
    browser.find_element(By.LINK_TEXT, "Overview").click()
    ready(browser, "overview")
    cell = f'tr[data-host="{data.HOST}"] [data-k="mem"]'
    assert browser.find_element(By.CSS_SELECTOR, cell).text != "77 %"
    reading = Sample("memory_used_percent", 77.0, unit="percent")
    for k in range(30):
        batch = MetricBatch(
            host=data.HOST, plugin="memory", ts=time.time(), seq=200_000 + k, samples=[reading]
        )
        stack.call(stack.store([batch]))
        time.sleep(1)
        if browser.find_element(By.CSS_SELECTOR, cell).text == "77 %":
            break
    assert browser.find_element(By.CSS_SELECTOR, cell).text == "77 %"


def test_read_token_sees_no_admin_controls(
    stack: Stack, browser: webdriver.Chrome, tuner: int, alerting: int
) -> None:
    sign_in(browser, stack, "read")
    assert browser.find_element(By.ID, "who").text.endswith("(read)")
    browser.find_element(By.LINK_TEXT, "Plugins").click()
    ready(browser, "plugins")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-plugin="tuner"]')
    row.find_element(By.CSS_SELECTOR, "button.details").click()
    text(browser, ".config-form")
    assert browser.find_elements(By.CSS_SELECTOR, ".admin") == []
    assert browser.find_elements(By.XPATH, "//button[text()='Save config']") == []
    field = browser.find_element(By.CSS_SELECTOR, '[data-path="$.interval_ms"] input')
    assert field.get_attribute("value") == "1000" and not field.is_enabled()
    shoot(browser, "plugins-read")
    browser.find_element(By.LINK_TEXT, "Alerts").click()
    ready(browser, "alerts")
    assert browser.find_element(By.CSS_SELECTOR, '#active tr[data-state="firing"]')
    assert browser.find_elements(By.CSS_SELECTOR, ".admin") == []


def test_a_bad_config_edit_shows_the_api_error_in_place(
    stack: Stack, browser: webdriver.Chrome, tuner: int
) -> None:
    sign_in(browser, stack, "admin")
    browser.get(f"{stack.url}/plugins")
    ready(browser, "plugins")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-plugin="tuner"]')
    row.find_element(By.CSS_SELECTOR, "button.details").click()
    text(browser, ".config-form")
    targets = browser.find_element(By.CSS_SELECTOR, '[data-path="$.targets"] textarea')
    assert targets.get_attribute("value") == "a\nb"
    field = browser.find_element(By.CSS_SELECTOR, '[data-path="$.interval_ms"] input')
    field.clear()
    field.send_keys("5")
    browser.find_element(By.XPATH, "//button[text()='Save config']").click()
    error = text(browser, '[data-path="$.interval_ms"] .field-error')
    assert "minimum of 100" in error
    assert field.get_attribute("aria-invalid") == "true"
    shoot(browser, "plugins-error")
    stored = httpx.get(
        f"{stack.url}/api/v1/plugins/{tuner}/config",
        headers={"Authorization": f"Bearer {stack.tokens['admin']}"},
    ).json()
    assert stored["config"]["interval_ms"] == 1000  # refused, not saved

    field.clear()
    field.send_keys("250")
    browser.find_element(By.XPATH, "//button[text()='Save config']").click()
    status = browser.find_element(By.CSS_SELECTOR, ".config-form [role=status]")
    WebDriverWait(browser, WAIT_S).until(lambda d: status.text.startswith("saved"), status.text)
    assert browser.find_elements(By.CSS_SELECTOR, ".field-error") == []
    stored = httpx.get(
        f"{stack.url}/api/v1/plugins/{tuner}/config",
        headers={"Authorization": f"Bearer {stack.tokens['admin']}"},
    ).json()
    assert stored["config"] == {
        "interval_ms": 250,
        "mode": "fast",
        "targets": ["a", "b"],
        "verbose": False,
    }

    browser.find_element(By.XPATH, "//button[text()='Disable plugin']").click()
    WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, 'tr[data-plugin="tuner"] td:nth-child(5)').text == "no"
        ),
        "the plugin was not shown as disabled",
    )
    info = httpx.get(
        f"{stack.url}/api/v1/plugins/{tuner}",
        headers={"Authorization": f"Bearer {stack.tokens['admin']}"},
    ).json()
    assert info["enabled"] is False


def test_explore_charts_a_selector(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "read")
    browser.find_element(By.LINK_TEXT, "Explore").click()
    ready(browser, "explore")
    box = browser.find_element(By.ID, "selector")
    box.send_keys("net_received_bytes")
    options = WebDriverWait(browser, WAIT_S).until(
        lambda d: [
            o.get_attribute("value")
            for o in d.find_elements(By.CSS_SELECTOR, "#completions option")
        ]
    )
    assert "net_received_bytes" in options
    assert f'net_received_bytes{{host="{data.HOST}"}}' in options
    browser.find_element(By.CSS_SELECTOR, "#query button[type=submit]").click()
    ready(browser, "explore")
    assert parse_qs(urlparse(browser.current_url).query)["selector"] == ["net_received_bytes"]
    rates = [
        v
        for v in browser.execute_script("return window.unity.charts[0].u.data[1]")
        if v is not None
    ]
    # A counter, charted as a rate; the current bucket is not over yet (see the overview).
    assert len(rates) > 100 and all(abs(v - data.RX) < 1 for v in rates[:-1])
    shoot(browser, "explore")


def test_alerts_page_ack_silence_and_sign_out(
    stack: Stack, browser: webdriver.Chrome, alerting: int
) -> None:
    sign_in(browser, stack, "admin")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-host="{data.HOST}"]')
    assert row.find_element(By.CSS_SELECTOR, '[data-k="alerts"]').text == "1"
    browser.find_element(By.LINK_TEXT, "Alerts").click()
    ready(browser, "alerts")
    firing = browser.find_element(By.CSS_SELECTOR, '#active tr[data-state="firing"]')
    assert "disk_full" in firing.text and "40 %" in firing.text and "critical" in firing.text
    firing.find_element(By.XPATH, ".//button[text()='Ack']").click()
    # The table is drawn anew after the ack: rows found before it go stale.
    WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: d.find_element(
            By.CSS_SELECTOR, '#active tr[data-state="firing"] td:last-child'
        ).text.startswith("acked"),
        "the alert was not shown as acked",
    )
    acked_by = stack.call(
        stack.pool.fetchval("SELECT acked_by FROM alerts WHERE id = $1", alerting)
    )
    assert acked_by == "web-admin"  # the session acts as its token

    form = browser.find_element(By.CSS_SELECTOR, "#silences form")
    form.find_element(By.NAME, "matchers").send_keys(f'{{host="{data.HOST}"}}')
    form.find_element(By.NAME, "comment").send_keys("disk swap tonight")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert "disk swap tonight" in text(browser, "#silences tbody tr")
    shoot(browser, "alerts")

    browser.find_element(By.ID, "signout").click()
    ready(browser, "signin")
    assert browser.get_cookie("unity_session") is None
    browser.get(stack.url + "/plugins")
    ready(browser, "signin")


def test_usable_on_a_phone_with_the_keyboard_and_in_the_dark(
    stack: Stack, browser: webdriver.Chrome
) -> None:
    sign_in(browser, stack, "read")
    browser.set_window_size(390, 844)
    try:
        browser.get(stack.url + "/")
        ready(browser, "overview")
        # The table scrolls inside its box; the page itself does not scroll sideways.
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        shoot(browser, "overview-phone")
        # The first Tab reaches the skip link, and the column sort works from the keyboard.
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert browser.switch_to.active_element.get_attribute("class") == "skip"
        sort = browser.find_element(By.CSS_SELECTOR, 'th[data-column="mem"] button')
        browser.execute_script("arguments[0].focus()", sort)
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        head = browser.find_element(By.CSS_SELECTOR, 'th[data-column="mem"]')
        assert head.get_attribute("aria-sort") == "descending"
    finally:
        browser.set_window_size(1280, 900)
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        browser.get(f"{stack.url}/hosts/{data.HOST}")
        ready(browser, "host")
        dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert dark != light and dark == "rgb(16, 19, 23)"
        shoot(browser, "host-dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_an_ended_session_brings_back_the_sign_in(stack: Stack, browser: webdriver.Chrome) -> None:
    sign_in(browser, stack, "read")
    # Expiry, or a revoked token, or a sign-out elsewhere: the row is no longer valid.
    stack.call(stack.pool.execute("UPDATE web_sessions SET expires_at = now()"))
    browser.find_element(By.LINK_TEXT, "Plugins").click()
    ready(browser, "signin")
    assert "sign in again" in text(browser, "#signin-error")
