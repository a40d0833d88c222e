"""The web page in a real browser (Debian's chromium, headless, driven by Selenium) against a live server
(create_app + uvicorn on a free loopback port, the toy model, the sample PDFs): search and see the
answering page first, toggle the kept anchors, upload a PDF and find it, and the API-key prompt.

Chromium and chromedriver come from ``scripts/install_browser.sh`` (run by ``scripts/test.sh``); where
they are missing the tests skip, unless ``SAP_RAG_REQUIRE_BROWSER=1`` (then they fail).
``SAP_RAG_WEB_SCREENSHOTS=DIR`` also saves the screenshots for the docs there (``docs/serve``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

from _mcp_fixtures import QUESTIONS, ROOT, live_server, sample_index
from _serve_fixtures import shared_index, shared_live  # noqa: F401  (session fixtures shared across modules)

KEY = "browser-key-0123456789"
WAIT = 90  # seconds for anything the page waits on (a loaded machine may take long to index a page)


def _browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    reason = "chromium and chromedriver are not installed (bash scripts/install_browser.sh installs them)"
    if os.environ.get("SAP_RAG_REQUIRE_BROWSER"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1040")
    for flag in flags:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def _serve(tmp_path_factory, encoder, **config):
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    index = SAPIndex.open(sample_index(tmp_path_factory, encoder), encoder=encoder)
    return index, create_app(index, encoder=encoder, config=ServeConfig(**config))


@pytest.fixture(scope="module")
def site(shared_live, browser):  # noqa: F811
    """The session's shared server (default config: no key, loopback only); tests leave its index as found."""
    return shared_live.url


def wait(driver, condition, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def images_loaded(driver, part: str) -> bool:
    """Every result image shows a loaded picture whose URL contains ``part``."""
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll('.hit img')];"
        "return imgs.length > 0 && imgs.every(i => (i.dataset.src || '').includes(arguments[0])"
        " && i.complete && i.naturalWidth > 0);",
        part,
    )


def search(driver, url: str, question: str, k: int = 3) -> list[tuple[str, int]]:
    """Type ``question`` into the page and submit; (filename, page) of each result, best first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver.get(f"{url}/")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    Select(driver.find_element(By.ID, "k")).select_by_visible_text(str(k))
    box = driver.find_element(By.ID, "query")
    box.send_keys(question, Keys.ENTER)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
    hits = driver.find_elements(By.CSS_SELECTOR, "#results .hit")
    return [(h.get_attribute("data-filename"), int(h.get_attribute("data-page-number"))) for h in hits]


def screenshot(driver, name: str, tmp_path: Path) -> None:
    """A PNG of the page (in tmp_path; also in $SAP_RAG_WEB_SCREENSHOTS for the docs, with fewer colours)."""
    from PIL import Image

    path = tmp_path / name
    driver.save_screenshot(str(path))
    folder = os.environ.get("SAP_RAG_WEB_SCREENSHOTS")
    if folder:
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            small.save(Path(folder) / name, optimize=True)


def severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_search_shows_the_answering_page_first(site, browser, tmp_path):
    for question, expected in QUESTIONS.items():
        found = search(browser, site, question)
        assert found[0] == expected, (question, found)
        assert len(found) == 3
        wait(browser, lambda d: images_loaded(d, "/image?max_side="))
    status = browser.find_element("id", "status").text
    assert status.startswith("3 pages in") and "best first" in status
    screenshot(browser, "search.png", tmp_path)
    assert severe_console_messages(browser) == []


def test_anchor_toggle_swaps_every_image_for_its_overlay(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    question = next(iter(QUESTIONS))
    search(browser, site, question)
    wait(browser, lambda d: images_loaded(d, "/image?"))
    toggle = browser.find_element(By.ID, "anchors-toggle")
    assert not toggle.is_selected()
    browser.find_element(By.CSS_SELECTOR, "label.switch").click()
    assert toggle.is_selected()
    wait(browser, lambda d: images_loaded(d, "/overlay.png?max_side="))
    first = browser.find_element(By.CSS_SELECTOR, ".hit img")
    assert "kept anchors" in first.get_attribute("alt")
    screenshot(browser, "anchors.png", tmp_path)
    browser.find_element(By.CSS_SELECTOR, "label.switch").click()  # and back to the plain pages
    wait(browser, lambda d: images_loaded(d, "/image?"))
    browser.execute_script("localStorage.clear()")
    assert severe_console_messages(browser) == []


def test_search_with_an_image(site, browser, tmp_path):
    """Choosing an image searches with it (POST /search/image): the page shows the pages the API gives for it."""
    import httpx
    from selenium.webdriver.common.by import By

    question = list(QUESTIONS)[2]
    hit = httpx.post(f"{site}/search", json={"query": question, "k": 1}, timeout=60).json()["hits"][0]
    picture = tmp_path / "page.png"
    picture.write_bytes(httpx.get(f"{site}{hit['image_url']}?format=png&max_side=800", timeout=60).content)
    with picture.open("rb") as handle:
        answer = httpx.post(f"{site}/search/image", files={"image": handle}, data={"k": "6"}, timeout=60).json()
    expected = [h["page_id"] for h in answer["hits"]]
    browser.get(f"{site}/")
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    browser.find_element(By.ID, "image-input").send_keys(str(picture))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
    assert browser.find_element(By.ID, "image-name").text == "page.png"
    assert not browser.find_element(By.ID, "query").is_displayed()  # the chip stands in for the text box
    shown = [h.get_attribute("data-page-id") for h in browser.find_elements(By.CSS_SELECTOR, "#results .hit")]
    assert shown == expected and len(shown) == 6
    browser.find_element(By.ID, "image-clear").click()
    assert browser.find_element(By.ID, "query").is_displayed()
    assert severe_console_messages(browser) == []


def _new_report(path: Path) -> None:
    """A one-page report PDF of a company the samples do not have, drawn as the samples are."""
    pytest.importorskip("reportlab")
    import numpy as np

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "examples" / "data" / "make_samples.py")
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    pages = samples.report_pages("Dunmore Logistics", ["employees"], np.random.default_rng(77), start=50)
    samples.write_pdf(path, pages)


def test_upload_a_pdf_and_find_it(site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # A name that is also HTML: the page must show it as text, never parse it.
    name = "<img src=x onerror=alert(1)> dunmore.pdf"
    pdf = tmp_path / name
    _new_report(pdf)
    browser.get(f"{site}/")
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    assert browser.find_element(By.CSS_SELECTOR, '[data-stat="documents"]').text == "3"
    browser.find_element(By.ID, "upload-input").send_keys(str(pdf))
    job = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".job[data-state]"))[0]
    assert job.get_attribute("data-state") == "done", job.text
    assert "Indexed: 1 document, 1 pages" in job.text and f"{name}: 1 page" in job.text
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-stat="documents"]').text == "4")
    entry = next(b for b in browser.find_elements(By.CSS_SELECTOR, "#doc-list button") if name in b.text)
    assert browser.find_elements(By.CSS_SELECTOR, "#doc-list img, #upload-status img, #doc-filter img") == []
    doc_id = entry.get_attribute("data-doc-id")
    entry.click()  # the document list sets the document filter
    assert Select(browser.find_element(By.ID, "doc-filter")).first_selected_option.get_attribute("value") == doc_id
    browser.find_element(By.ID, "query").send_keys("How many employees did Dunmore Logistics have?\n")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
    hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert [(h.get_attribute("data-filename"), h.get_attribute("data-page-number")) for h in hits] == [(name, "1")]
    assert hits[0].find_element(By.CSS_SELECTOR, ".doc-name").text == name
    assert hits[0].find_elements(By.CSS_SELECTOR, ".doc-name :not(wbr), .snippet *") == []
    wait(browser, lambda d: images_loaded(d, "/image?"))
    assert severe_console_messages(browser) == []
    import httpx

    assert httpx.delete(f"{site}/documents/{doc_id}", timeout=60).status_code == 200  # as found, for the next


def test_the_page_asks_for_the_api_key(tmp_path_factory, toy_encoder, browser):
    from selenium.webdriver.common.by import By

    index, app = _serve(tmp_path_factory, toy_encoder, api_key=KEY)
    try:
        with live_server(app) as url:
            browser.get(f"{url}/")
            dialog = wait(browser, lambda d: d.find_element(By.ID, "key-dialog").get_attribute("open") is not None)
            assert dialog
            key_input = browser.find_element(By.ID, "key-input")
            key_input.send_keys("wrong-key-000000\n")
            wait(browser, lambda d: d.find_element(By.ID, "key-error").text == "That key was refused.")
            key_input.clear()
            key_input.send_keys(KEY + "\n")
            wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-stat="documents"]').text == "3")
            question, expected = next(iter(QUESTIONS.items()))
            browser.find_element(By.ID, "query").send_keys(question + "\n")
            wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
            first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
            assert (first.get_attribute("data-filename"), int(first.get_attribute("data-page-number"))) == expected
            # <img> cannot send the key: the page fetched each image with it and shows it from a blob.
            wait(browser, lambda d: images_loaded(d, "/image?"))
            src = browser.find_element(By.CSS_SELECTOR, "#results .hit img").get_attribute("src")
            assert src.startswith("blob:")
            browser.execute_script("sessionStorage.clear()")
    finally:
        index.close()
