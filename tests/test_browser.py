"""The dictionary page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a running service (the app on uvicorn, LocalBackend) over the sample index.

A text search shows the service's ranking as a grid of animated skeletons drawn from the clips' ``.pose``
files; an uploaded pose is recognised (its own clip first, the index's best glosses); API errors are shown.
A screenshot is written to ``$SIGNCLIP_TEST_ARTIFACTS`` (default ``runs/test-artifacts``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signclip.api import LocalBackend, ServiceSettings, create_app
from signclip.search.lookup import SignSearch
from tests.embed_helpers import LABELLED, tiny_model, write_corpus

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUERY = "<en> <ase> house"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _running(settings: ServiceSettings) -> Iterator[str]:
    """The app over ``settings`` on uvicorn in a thread of this process; yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(LocalBackend(settings), settings, token=""), host="127.0.0.1",
                                           port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{server.config.port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def service(tmp_path_factory, poses_dir):
    work = tmp_path_factory.mktemp("browser")
    model = tiny_model(work / "tiny")
    index = write_corpus(work, poses_dir, model)
    settings = ServiceSettings.from_mapping({"models": {"default": str(model)}, "indexes": {"asl": index},
                                            "enable_video": False})
    with _running(settings) as url:
        yield {"url": url, "index": index, "model": model}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; `make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 60, what: str = "the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message=f"timed out waiting for {what}")


def _painted_pixels(driver, canvas) -> int:
    return driver.execute_script(
        "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;", canvas)


@pytest.mark.timeout(240)
def test_search_page_in_a_real_browser(service, browser, poses_dir):
    from selenium.webdriver.common.by import By

    expected = SignSearch.load(service["index"]).search(QUERY, k=4)
    browser.get(service["url"])
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#index option"), what="the index list")

    # a text search: the service's ranking, each clip drawn as a skeleton
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys(QUERY)
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("4")
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hit")) == len(expected),
          what="the results")
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert [c.get_attribute("data-id") for c in cards] == [h.id for h in expected]
    assert LABELLED[expected[0].id] in cards[0].text and "ase" in cards[0].text
    first_canvas = cards[0].find_element(By.TAG_NAME, "canvas")
    _wait(browser, lambda d: first_canvas.get_attribute("data-drawn") == "1", what="the first skeleton")
    time.sleep(0.5)  # a few animation frames
    assert _painted_pixels(browser, first_canvas) > 200, "the skeleton's canvas is blank"

    # search by sign: an uploaded pose finds its own clip first, and the index's best glosses
    upload = poses_dir / "library.pose"
    browser.find_element(By.ID, "sign-file").send_keys(str(upload))
    browser.find_element(By.ID, "recognise").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#glosses li")
          and d.find_elements(By.CSS_SELECTOR, "#sign-results .hit"), what="the recognition")
    assert browser.find_elements(By.CSS_SELECTOR, "#sign-results .hit")[0].get_attribute("data-id") == "library"
    glosses = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#glosses li")]
    assert glosses and all(" · " in g for g in glosses)
    assert any(g.startswith(label) for g in glosses for label in set(LABELLED.values()))

    artifacts = Path(os.environ.get("SIGNCLIP_TEST_ARTIFACTS", ROOT / "runs" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(artifacts / "search-page.png"))

    # the API's errors reach the person
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("500")
    browser.find_element(By.ID, "search").click()
    error = browser.find_element(By.ID, "search-error")
    _wait(browser, lambda d: error.is_displayed() and "1 to 100 results" in error.text, what="the error message")
    box.clear()
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: "type a word" in error.text, what="the empty-query message")


@pytest.mark.timeout(180)
def test_the_result_count_is_bounded_by_the_servers_max_k(service, browser):
    """The page's default of 12 results is refused by a server whose max_k is lower: it follows /info."""
    from selenium.webdriver.common.by import By

    most = 5
    settings = ServiceSettings.from_mapping({"models": {"default": str(service["model"])},
                                            "indexes": {"asl": service["index"]}, "enable_video": False,
                                            "max_k": most})
    with _running(settings) as url:
        browser.get(url)
        k = browser.find_element(By.ID, "k")
        _wait(browser, lambda d: k.get_attribute("max") == str(most), what="the server's limits")
        assert k.get_attribute("value") == str(most)
        browser.find_element(By.ID, "query").send_keys(QUERY)
        browser.find_element(By.ID, "search").click()
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"), what="the results")
        assert not browser.find_element(By.ID, "search-error").is_displayed()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results .hit")) <= most
