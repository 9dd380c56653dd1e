"""The web page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) loads the page of a running `lxmert serve`, asks a
question from the keyboard about a store image and about an uploaded picture, and checks
the answers and the drawn boxes; screenshots are saved as test artifacts (under the
pytest tmp dir and copied to test-artifacts/, or $LXMERT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
pytest.importorskip("starlette", reason="the 'serve' extra is not installed")

from support.serving import (picture, png_bytes, save_qa, store_of, tiny_detector_config)

from lxmert.pipeline import pipeline
from lxmert.serve.server import BackgroundServer
from lxmert.serve.service import VQAService

ARTIFACTS = Path(os.environ.get("LXMERT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def store_pipe(world, qa):
    return pipeline("vqa", model=qa, features=store_of(world))


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver is given: Selenium Manager never looks for (or downloads) one
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _severe_console_messages(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_ask_about_a_store_image_from_the_keyboard(browser, store_pipe, world, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    service = VQAService(store_pipe)
    with BackgroundServer(service) as server:
        browser.get(server.url + "/")
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        # every control has a label, and Tab walks image -> question -> answers -> Ask
        for control in browser.find_elements(By.CSS_SELECTOR, "input, select"):
            ident = control.get_attribute("id")
            assert browser.find_elements(By.CSS_SELECTOR, f'label[for="{ident}"]'), f"#{ident} has no label"
        order = []
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        for _ in range(10):
            order.append(browser.switch_to.active_element.get_attribute("id"))
            browser.switch_to.active_element.send_keys(Keys.TAB)
        assert [i for i in order if i in ("image-select", "question", "top-k", "ask-button")][:4] == \
            ["image-select", "question", "top-k", "ask-button"], order

        options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#image-select option")]
        assert options == service.catalog.ids() and all(o.startswith("synth_test_") for o in options)
        img_id, question = options[2], "what color is the ball?"
        Select(browser.find_element(By.ID, "image-select")).select_by_value(img_id)
        _wait(browser, lambda d: d.execute_script(
            "const p = document.getElementById('picture'); return p.complete && p.naturalWidth > 0 && "
            f"p.src.endsWith('/api/images/{img_id}/picture');"))
        field = browser.find_element(By.ID, "question")
        field.send_keys(question)
        field.send_keys(Keys.ENTER)  # Enter submits
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#answers li")) > 0)

        expected = store_pipe(img_id, question, top_k=5, return_attention=True)
        shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#answers li .answer")]
        assert shown == [a["answer"] for a in expected["answers"]]
        scores = [float(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#answers li .score")]
        assert scores == [round(a["score"], 3) for a in expected["answers"]]
        boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes rect.box")
        assert len(boxes) == len(expected["boxes"])
        weights = [float(b.get_attribute("data-attention")) for b in boxes]
        assert sorted(weights) == pytest.approx(sorted(expected["attention"]), abs=1e-4)
        strongest = max(boxes, key=lambda b: float(b.get_attribute("fill-opacity")))
        assert float(strongest.get_attribute("data-attention")) == pytest.approx(max(expected["attention"]), abs=1e-4)
        assert browser.find_element(By.ID, "boxes").get_dom_attribute("viewBox") == \
            f"0 0 {expected['image_size'][1]} {expected['image_size'][0]}"
        assert "Answered in" in browser.find_element(By.ID, "status").text
        assert _severe_console_messages(browser) == []
        _save_screenshot(browser, tmp_path, "serve-page-store.png")

        # an empty question is refused on the page, before any request
        field.clear()
        field.send_keys(Keys.ENTER)
        status = browser.find_element(By.ID, "status")
        assert status.text == "Type a question first." and "error" in status.get_attribute("class")


def test_ask_about_an_uploaded_picture(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root = tmp_path / "models"
    qa = save_qa(root / "qa", ["yes", "no", "red", "two", "ball"], visual_feat_dim=2048)
    pipe = pipeline("vqa", model=qa, detector_config=tiny_detector_config(tmp_path / "det.json"),
                    random_init_detector=True)
    array = picture(150, 200, seed=7)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(array))
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("these are notes, not pixels\n")
    with BackgroundServer(VQAService(pipe)) as server:
        browser.get(server.url + "/")
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        assert browser.find_element(By.ID, "source-store").get_attribute("disabled") == "true"  # no store here
        browser.find_element(By.ID, "image-file").send_keys(str(photo))
        _wait(browser, lambda d: d.execute_script(
            "const p = document.getElementById('picture'); return p.complete && p.naturalWidth === 200;"))
        assert browser.find_element(By.ID, "source-upload").is_selected()
        field = browser.find_element(By.ID, "question")
        field.send_keys("is there a ball?")
        field.send_keys(Keys.ENTER)
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#answers li")) > 0)
        expected = pipe(array, "is there a ball?", top_k=5)
        shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#answers li .answer")]
        assert shown == [a["answer"] for a in expected]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#boxes rect.box")) == 36
        assert "detector" in browser.find_element(By.ID, "status").text
        assert _severe_console_messages(browser) == []
        _save_screenshot(browser, tmp_path, "serve-page-upload.png")

        # a file that is no picture: the server's refusal is shown, the page keeps working
        browser.find_element(By.ID, "image-file").send_keys(str(not_a_picture))
        field.send_keys(Keys.ENTER)
        _wait(browser, lambda d: "Could not answer" in d.find_element(By.ID, "status").text)
        status = browser.find_element(By.ID, "status")
        assert "not an image file" in status.text and "error" in status.get_attribute("class")
        assert browser.find_elements(By.CSS_SELECTOR, "#answers li") == []
