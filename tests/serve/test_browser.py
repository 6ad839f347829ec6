"""The playground in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium)
against a live server: type a prompt, see streamed tokens, the distribution chart, the attention grid
and a beam tree, and take a screenshot that decodes, has the window's size and is not blank.

Without Chromium the test is skipped with the reason, except under CI (``CI`` set), where it fails.
Run as a script to refresh docs/serving.png from a real checkpoint::

    PYTHONPATH=src python tests/serve/test_browser.py runs/transformer/best --out docs/serving.png
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from extras import in_ci

pytestmark = pytest.mark.slow  # a real browser against a live server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1400, 1000


def need_browser() -> None:
    """Skip (fail under CI) when Selenium, Chromium or its driver is missing."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
               if not Path(path).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


def open_browser(width: int = WIDTH, height: int = HEIGHT):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def drive(driver, url: str, prompt: str, strategy: str = "top-k", knobs: dict | None = None,
          click_token: int = 0) -> dict:
    """Open the page, type ``prompt``, generate with ``strategy`` and wait for the tokens, the
    chart and (for a Transformer) the attention grid. Returns what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(url + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) > 0)
    driver.find_element(By.ID, "prompt").send_keys(prompt)
    Select(driver.find_element(By.ID, "strategy")).select_by_value(strategy)
    for name, value in (knobs or {}).items():
        field = driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "best")))
    tokens = driver.find_elements(By.CSS_SELECTOR, "#output .tok")
    if click_token and len(tokens) > click_token:
        tokens[click_token].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dist-svg rect.bar"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attn-svg rect"))
    return {"status": driver.find_element(By.ID, "status").text,
            "error": driver.find_element(By.ID, "error").text,
            "tokens": len(tokens),
            "bars": len(driver.find_elements(By.CSS_SELECTOR, "#dist-svg .bar-row")),
            "removed": len(driver.find_elements(By.CSS_SELECTOR, "#dist-svg .bar.removed")),
            "attention_cells": len(driver.find_elements(By.CSS_SELECTOR, "#attn-svg rect"))}


def check_png(path: Path, width: int, height: int) -> None:
    """The screenshot decodes, has the window's size and is not blank."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        assert image.size == (width, height)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10  # not one flat colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, bars, colours


def test_playground_streams_tokens_and_draws_the_distribution(models, tmp_path):
    need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from arlm.serve import create_app
    from arlm.serve.server import serve_in_thread

    app = create_app(models)
    with serve_in_thread(app) as url:
        driver = open_browser()
        try:
            seen = drive(driver, url, "the cat", "top-k", {"top_k": 3, "max_new_tokens": 12, "seed": 4})
            assert seen["error"] == ""
            assert seen["status"].startswith("done:") and seen["tokens"] >= 1
            assert app.state.stats["streams_done"] == 1  # the page streamed (server-sent events)
            assert seen["bars"] >= 4 and seen["removed"] >= 1  # top-k = 3 cuts the rest, shown
            T = min(3 + seen["tokens"], 32)  # [SOS] the cat + the generated tokens
            assert seen["attention_cells"] == T * T
            shot = tmp_path / "playground.png"
            driver.save_screenshot(str(shot))
            check_png(shot, *driver.execute_script("return [window.innerWidth, window.innerHeight]"))

            # beam search draws its tree
            Select(driver.find_element(By.ID, "strategy")).select_by_value("beam")
            driver.find_element(By.ID, "generate").click()
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#beam-svg g.node"))
            nodes = driver.find_elements(By.CSS_SELECTOR, "#beam-svg g.node")
            assert len(nodes) > 4 and driver.find_elements(By.CSS_SELECTOR, "#beam-svg g.node.finished")
            assert driver.find_element(By.ID, "error").text == ""
        finally:
            driver.quit()


def main() -> None:
    """Serve CHECKPOINTs and save a screenshot of the playground (docs/serving.png)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("docs/serving.png"))
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--height", type=int, default=1250)
    args = parser.parse_args()
    from PIL import Image

    from arlm.serve import create_app, load_models
    from arlm.serve.server import serve_in_thread

    with serve_in_thread(create_app(load_models(args.checkpoints))) as url:
        driver = open_browser(WIDTH, args.height)
        try:
            seen = drive(driver, url, args.prompt, "top-p",
                         {"temperature": 0.8, "top_p": 0.9, "max_new_tokens": 60, "seed": 1}, click_token=9)
            print(seen, file=sys.stderr)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    with Image.open(args.out) as image:  # a palette PNG: a fraction of the size, same look
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
