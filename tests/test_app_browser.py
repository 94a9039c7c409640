"""`torchddsp app` in a real headless browser (Debian's Chromium, driven by Selenium): what a
person does on each page, checked on the audio the page holds, with a screenshot of each page
(into $TORCHDDSP_APP_SCREENSHOTS when set, e.g. docs/)."""

import base64
import io
import os
import re
import shutil
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from test_app import _midi_file, _pitch_classes_agree, _save_voice_model, _serve
from torchddsp.data.soundfont import render_dataset
from torchddsp.models import example_input

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's Chromium: apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture(scope="module")
def app_folder(tmp_path_factory):
    """The server's data folder; its user models are in ``models/``."""
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="module")
def server(app_folder):
    process, url = _serve(app_folder)
    yield url
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root here
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--mute-audio",
        "--use-fake-device-for-media-stream",  # a microphone that beeps
        "--use-fake-ui-for-media-stream",  # and is allowed without asking
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("TORCHDDSP_APP_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def _open(browser, url, page):
    browser.get(f"{url}#{page}")
    ready = "return document.body.dataset.ready === 'true'"
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(ready))
    assert browser.find_element(By.ID, page).is_displayed()


def _wait_for(browser, page, condition, timeout=120):
    """Wait for ``condition``; a message in the page's error line fails at once, with it."""

    def done(driver):
        error = driver.find_element(By.ID, f"{page}-error").text
        assert not error, f"the page says: {error}"
        return condition(driver)

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(done)


def _fetch(browser, url):
    """What the browser would get at ``url``, with its session cookie."""
    cookie = browser.get_cookie("torchddsp_session")["value"]
    request = urllib.request.Request(url, headers={"cookie": f"torchddsp_session={cookie}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers


def _audio_of(browser, element_id):
    src = browser.find_element(By.ID, element_id).get_attribute("src")
    data, headers = _fetch(browser, src)
    assert headers["content-type"].startswith("audio/")
    return sf.read(io.BytesIO(data), dtype="float32")


def _screenshot(browser, path):
    """The whole page, also below the window (through Chrome's DevTools protocol)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    path.write_bytes(
        base64.b64decode(browser.execute_cdp_cmd("Page.captureScreenshot", options)["data"])
    )


def _only_own_resources(browser, url):
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded and all(name.startswith(url) for name in loaded), loaded


def test_a_recording_from_the_microphone_becomes_the_input(browser, server):
    _open(browser, server, "transfer")
    record = browser.find_element(By.CSS_SELECTOR, "#transfer-picker .record")
    record.click()
    WebDriverWait(browser, 10).until(lambda d: "Stop" in record.text)
    browser.execute_script("return new Promise(done => setTimeout(done, 1000))")
    record.click()
    chosen = browser.find_element(By.CSS_SELECTOR, "#transfer-picker .chosen")
    took = r"recording\.wav: \d+\.\d s at \d+ Hz\."  # the page's WAV of the fake microphone
    _wait_for(browser, "transfer", lambda d: re.fullmatch(took, chosen.text), 30)
    assert (
        browser.find_element(By.ID, "transfer-input-audio").get_attribute("src").startswith("blob:")
    )


def test_transfer_an_upload_with_autotune(browser, server, shots):
    _open(browser, server, "transfer")
    browser.find_element(By.ID, "transfer-file").send_keys(str(example_input()))
    chosen = browser.find_element(By.CSS_SELECTOR, "#transfer-picker .chosen")
    _wait_for(browser, "transfer", lambda d: chosen.text.startswith("example.flac: 12.0 s"))
    autotune = browser.find_element(By.ID, "transfer-autotune")
    autotune.send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * 14)  # as a person would, by keyboard
    shown = browser.find_element(By.CSS_SELECTOR, "output[for=transfer-autotune]")
    assert shown.text == "0.7"
    browser.find_element(By.ID, "transfer-run").click()
    download = browser.find_element(By.ID, "transfer-download")
    _wait_for(browser, "transfer", lambda d: download.is_displayed())
    audio, rate = _audio_of(browser, "transfer-output-audio")
    source, source_rate = sf.read(example_input(), dtype="float32")
    assert rate == source_rate and len(audio) == len(source)
    assert np.sqrt(np.mean(audio**2)) > 0.01
    frames, cents = _pitch_classes_agree(audio, source, rate)
    assert frames > 300 and cents < 50
    data, headers = _fetch(browser, download.get_attribute("href"))
    assert headers["content-disposition"].endswith("example.violin.wav")
    assert sf.read(io.BytesIO(data))[0].shape == audio.shape
    plot = browser.find_element(By.ID, "transfer-plot")
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", plot)
    )
    assert "autotuned to" in browser.find_element(By.ID, "transfer-status").text
    _only_own_resources(browser, server)
    _screenshot(browser, shots / "app-transfer.png")


def test_play_a_midi_file(browser, server, shots, tmp_path):
    _open(browser, server, "play")
    browser.find_element(By.ID, "play-file").send_keys(str(_midi_file(tmp_path / "line.mid")))
    chosen = browser.find_element(By.ID, "play-chosen")
    _wait_for(browser, "play", lambda d: chosen.text == "line.mid: 3 notes in 1 track(s).")
    browser.find_element(By.ID, "play-vibrato_cents").send_keys(*[Keys.ARROW_RIGHT] * 20)
    browser.find_element(By.ID, "play-run").click()
    download = browser.find_element(By.ID, "play-download")
    _wait_for(browser, "play", lambda d: download.is_displayed())
    audio, rate = _audio_of(browser, "play-output-audio")
    assert len(audio) == round((1.5 + 0.3) * 100) * 160 and np.sqrt(np.mean(audio**2)) > 0.01
    assert "3 notes" in browser.find_element(By.ID, "play-status").text
    _screenshot(browser, shots / "app-play.png")


@pytest.mark.skipif(
    shutil.which("fluidsynth") is None,
    reason="renders its recordings with FluidSynth: apt-get install fluidsynth fluid-soundfont-gm",
)
def test_train_stop_resume_and_find_the_model_in_the_list(browser, server, shots, tmp_path):
    render_dataset("violin", 0.5, tmp_path / "renders", seed=1)  # one 30 s clip
    _open(browser, server, "train")
    browser.find_element(By.ID, "train-name").send_keys("tinyviolin")
    steps = browser.find_element(By.ID, "train-steps")
    steps.clear()
    steps.send_keys("30")
    files = [str(path) for path in sorted((tmp_path / "renders").glob("*.wav"))]
    browser.find_element(By.ID, "train-files").send_keys("\n".join(files))
    chosen = browser.find_element(By.ID, "train-chosen")
    _wait_for(browser, "train", lambda d: chosen.text.startswith("1 recording(s), 0.5 minutes"))
    browser.find_element(By.ID, "train-start").click()
    card = _wait_for(
        browser,
        "train",
        lambda d: d.find_elements(By.CSS_SELECTOR, ".training[data-name=tinyviolin]"),
    )[0]
    numbers = card.find_element(By.CLASS_NAME, "numbers")
    phase = card.find_element(By.CLASS_NAME, "phase")

    def stepping(driver):
        step = re.match(r"Step (\d+) of 30", numbers.text)
        return step and int(step[1]) > 0 and phase.text == "Training"

    WebDriverWait(browser, 120, poll_frequency=0.2).until(stepping)  # progress, while it trains
    card.find_element(By.CLASS_NAME, "stop").click()
    WebDriverWait(browser, 60).until(lambda d: phase.text == "Stopped")
    card.find_element(By.CLASS_NAME, "resume").click()
    WebDriverWait(browser, 30).until(lambda d: phase.text != "Stopped")
    WebDriverWait(browser, 180).until(lambda d: phase.text in ("Finished", "Failed", "Stopped"))
    assert phase.text == "Finished", card.find_element(By.CLASS_NAME, "error").text
    assert numbers.text.startswith("Step 30 of 30")
    table = browser.find_element(By.ID, "models-table")
    WebDriverWait(browser, 10).until(lambda d: "tinyviolin" in table.text)
    models = [
        o.get_attribute("value")
        for o in browser.find_elements(By.CSS_SELECTOR, "#transfer-model option")
    ]
    assert "tinyviolin" in models
    preview = card.find_element(By.CSS_SELECTOR, "audio.resynthesis").get_attribute("src")
    data, _ = _fetch(browser, preview)
    assert data[:4] == b"RIFF"
    browser.execute_script("arguments[0].open = true", card.find_element(By.TAG_NAME, "details"))
    _screenshot(browser, shots / "app-train.png")


def test_voice_converts_or_says_no_voice_model_is_installed(browser, server, shots, app_folder):
    _open(browser, server, "voice")
    notice, convert = (
        browser.find_element(By.ID, "voice-missing"),
        browser.find_element(By.ID, "voice-run"),
    )
    installed = browser.find_element(By.ID, "voice-model").get_attribute("value")
    if not installed:  # until a voice model ships: the page says so, and converts once one is added
        assert notice.is_displayed() and "No voice model is installed" in notice.text
        assert not convert.is_enabled()
        _take_example_speech(browser)
        _screenshot(browser, shots / "app-voice.png")
        _save_voice_model(app_folder / "models" / "voice.pt")
        browser.refresh()  # the page lists the models as it loads
        _open(browser, server, "voice")
        notice, convert = (
            browser.find_element(By.ID, "voice-missing"),
            browser.find_element(By.ID, "voice-run"),
        )
    assert not notice.is_displayed() and convert.is_enabled()
    _take_example_speech(browser)
    browser.find_element(By.ID, "voice-gender-on").click()
    browser.find_element(By.ID, "voice-gender").send_keys(Keys.END)  # a woman's voice
    convert.click()
    download = browser.find_element(By.ID, "voice-download")
    _wait_for(browser, "voice", lambda d: download.is_displayed())
    audio, rate = _audio_of(browser, "voice-output-audio")
    assert len(audio) == 4 * rate
    assert "gender 1.00" in browser.find_element(By.ID, "voice-status").text
    if installed:
        _screenshot(browser, shots / "app-voice.png")


def _take_example_speech(browser):
    browser.find_element(By.CSS_SELECTOR, "#voice-picker .example").click()
    speech = browser.find_element(By.ID, "voice-input-audio")
    duration = "return arguments[0].duration"
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(duration, speech))
    assert browser.execute_script(duration, speech) == pytest.approx(4.0)
