"""Open the built site in headless Chromium and check what a reader sees.

``python3 docs/check_site.py docs/_build/html [--screenshots DIR]`` serves the
built site on a loopback port, opens the front page, an API page with
formulas, the results page, a notebook page and a search for
``fraction_field`` in Debian's Chromium (through its ChromeDriver, with
selenium), and fails when:

* raw TeX is left in the rendered text (a ``\\(`` / ``\\[`` delimiter, a
  ``\\frac``-like command, a ``:math:`` role), or a page that has formulas shows
  no rendered MathJax;
* an image did not load (not complete, or zero natural width);
* the browser logged an error (a failed request, a script error);
* the search does not find ``fraction_field``.

It saves a screenshot of each page into ``--screenshots`` and prints one line a
page. Nothing is fetched from outside the machine: a request to any other host
than the loopback server is itself an error in the log.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: (name, path in the site, whether the page must show rendered maths, what the screenshot shows: a CSS selector
#: scrolled into view, None for the top of the page)
PAGES = (
    ("front", "index.html", False, None),
    ("api", "docs/api/density.html", True, None),
    ("results", "simulations/README.html", False, "article img"),
    ("notebook", "examples/01_your_mask.html", False, "article .cell_output img"),
)
SEARCH_TERM = "fraction_field"

#: TeX a reader should never see as text: math delimiters, common commands, an unparsed role
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\(frac|sqrt|sum|mathrm|text|left|right|le|ge|Phi|cdot)\b|:math:`")


def browser_available() -> str | None:
    """None when Chromium, its ChromeDriver and selenium are installed; else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e \".[docs]\")")
    return f"missing: {', '.join(missing)} (apt-get install chromium chromium-driver)" if missing else None


@contextlib.contextmanager
def serve(root: Path):
    """An HTTP server for ``root`` on a free loopback port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a browser that navigates away mid-file: not the site's fault
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the checks read the browser's log, not the server's
        pass


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000):
    """A headless Chromium driven by ChromeDriver, with the browser's console log readable."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="metastructure-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_maths(driver, timeout: float = 20.0) -> None:
    """Until MathJax (when the page loads it) has typeset every formula: its startup promise has resolved.
    ``driver.get`` has already waited for the load event, which waits for the (async) MathJax script."""
    driver.set_script_timeout(timeout)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;"
        "(typeset || Promise.resolve()).then(() => done(true));")


def _follow_refresh(driver, timeout: float = 20.0) -> None:
    """Until a page that redirects by ``<meta http-equiv="refresh">`` (the site's index.html) has been replaced
    by its target and that has loaded: ``driver.get`` returns once the redirecting page itself has loaded, so
    reading the page at once could read the redirect (no images, no text)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return [document.readyState, !!document.querySelector('meta[http-equiv=\"refresh\"]')]")
        if state == ["complete", False]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{driver.current_url} still redirects or loads after {timeout:g} s")


def check_page(driver, url: str, *, maths: bool) -> dict:
    """Open ``url`` and return what was seen: raw TeX, images, rendered formulas, browser errors."""
    driver.get(url)
    _follow_refresh(driver)
    _wait_for_maths(driver)
    text = driver.execute_script("return document.body.innerText")
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    rendered = driver.execute_script("return document.querySelectorAll('mjx-container').length")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    raw = sorted({m.group(0) for m in RAW_TEX.finditer(text)})
    problems = []
    if raw:
        problems.append(f"raw TeX in the text: {raw[:5]}")
    if maths and rendered == 0:
        problems.append("no rendered formula (mjx-container)")
    broken = [src for src, complete, width in images if not complete or not width]
    if broken:
        problems.append(f"images not loaded: {broken[:5]}")
    if errors:
        problems.append(f"browser errors: {errors[:5]}")
    return {"url": url, "images": len(images), "formulas": rendered, "chars": len(text), "problems": problems}


def check_search(driver, base: str, term: str = SEARCH_TERM, timeout: float = 20.0) -> dict:
    """Search the site for ``term`` with its own search page; the result links must include the term's entry."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}search.html?q={term}")
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results ul.search li")
        or "did not match" in d.find_element(By.ID, "search-results").text)
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#search-results ul.search a")]
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems = [] if any(term in (h or "") for h in links) else [f"search for {term!r} found no entry: {links[:5]}"]
    if errors:
        problems.append(f"browser errors: {errors[:5]}")
    return {"url": driver.current_url, "results": len(links), "problems": problems}


def check_site(site: str | Path, *, screenshots: str | Path | None = None) -> dict[str, dict]:
    """Every check of this module on the built site ``site``; ``{page name: what was seen}``.

    Raises:
        FileNotFoundError: ``site`` has no ``index.html`` (build it first).
        RuntimeError: Chromium, ChromeDriver or selenium is missing (:func:`browser_available`).
    """
    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site}/index.html: build the site first (docs/conf.py says how)")
    why = browser_available()
    if why:
        raise RuntimeError(why)
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    seen = {}
    with serve(site) as base, chromium() as driver:
        for name, path, maths, focus in PAGES:
            seen[name] = check_page(driver, base + path, maths=maths)
            if shots:
                if focus:
                    driver.execute_script("const e = document.querySelector(arguments[0]);"
                                          " if (e) e.scrollIntoView({block: 'center', behavior: 'instant'});", focus)
                driver.save_screenshot(str(shots / f"{name}.png"))
        seen["search"] = check_search(driver, base)
        if shots:
            driver.save_screenshot(str(shots / "search.png"))
    return seen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", help="the built site, e.g. docs/_build/html")
    parser.add_argument("--screenshots", help="folder for one PNG a page")
    args = parser.parse_args(argv)
    try:
        seen = check_site(args.site, screenshots=args.screenshots)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, s in seen.items():
        facts = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("url", "problems"))
        print(f"{name:9s} {'ok' if not s['problems'] else 'FAIL'}: {facts}  {s['url']}")
        for p in s["problems"]:
            print(f"          {p}")
    return 1 if any(s["problems"] for s in seen.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
