"""A real browser for the page tests: Debian's Chromium, driven by Playwright for Python.

Playwright's own browser download (`playwright install`) is never used: nothing may be fetched
from outside the package registries. When Chromium is missing and we are root, it is installed
from Debian's packages (as .ci/run does); otherwise the tests fail with the command to run.
They never skip.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

CHROMIUM = Path(os.environ.get("RECRUITMAIL_CHROMIUM", "/usr/bin/chromium"))
PACKAGES = ["chromium", "chromium-driver"]
# Where the page tests leave a screenshot of every page at each viewport: docs/screenshots/
# with `make screenshots` (RECRUITMAIL_SCREENSHOTS=1), else a scratch folder, so a test run
# leaves the tree as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("RECRUITMAIL_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "recruitmail-screenshots"
)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def chromium() -> Path:
    """The Chromium binary, installed from Debian's packages when missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        # The suite's parallel workers may all find it missing: one installs, the others wait
        # on the lock and find it there (two apt-gets at once fail on dpkg's own lock).
        with open(Path(tempfile.gettempdir()) / "recruitmail-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not CHROMIUM.exists():
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
                subprocess.run(
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
                    check=False,
                    env=env,
                )
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"Chromium is missing at {CHROMIUM}: install it with "
            f"`apt-get install {' '.join(PACKAGES)}` (never `playwright install`)."
        )
    return CHROMIUM


@asynccontextmanager
async def served(app: FastAPI, port: int) -> AsyncIterator[str]:
    """The app on a real loopback port (uvicorn, in this event loop), for a real browser."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it did not start
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium()),
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def new_context(browser: Browser, viewport: dict, origin: str) -> BrowserContext:
    """A context that trusts the fakes' throwaway CA (ignore_https_errors), may use the
    clipboard on our origin, and can reach 127.0.0.1 only."""
    context = await browser.new_context(viewport=viewport, ignore_https_errors=True)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    await context.route("**/*", _loopback_only)
    return context


async def _loopback_only(route: Route) -> None:
    if urlparse(route.request.url).hostname == "127.0.0.1":
        await route.continue_()
    else:
        await route.abort("internetdisconnected")


# WCAG 2 contrast of each text element against the first opaque background behind it.
_CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  const texts = "h1,h2,p,a,button,label,dt,dd,li,span,textarea,input";
  for (const el of document.querySelectorAll(texts)) {
    if (!el.offsetParent || !el.textContent.trim() && !el.value) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const what = `${el.tagName} "${el.textContent.trim().slice(0, 40)}"`;
    if (ratio < 4.5) worst.push(`${what} ${ratio.toFixed(2)}`);
  }
  return worst;
}
"""

_STRUCTURE_JS = """
() => ({
  lang: document.documentElement.lang,
  h1: document.querySelectorAll("h1").length,
  viewport: !!document.querySelector('meta[name=viewport]'),
  unlabelled: [...document.querySelectorAll("input:not([type=hidden]),textarea,select")]
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
    .map((el) => el.id || el.name),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  product: document.title.includes("Recruitmail") && !!document.querySelector(".brand"),
})
"""


async def check_page(page: Page) -> None:
    """What every page must hold, at any viewport: nothing wider than the screen, one h1, a
    language, a viewport tag, the product's name, labelled fields, AA contrast, and a visible
    focus ring on the first control reached with Tab."""
    facts = await page.evaluate(_STRUCTURE_JS)
    assert facts["overflow"] <= 0, f"{page.url} overflows by {facts['overflow']} px"
    assert facts["lang"] == "en" and facts["h1"] == 1 and facts["viewport"], facts
    assert facts["product"], "the page does not carry the product name"
    assert facts["unlabelled"] == [], facts["unlabelled"]
    low = await page.evaluate(_CONTRAST_JS)
    assert low == [], f"contrast below 4.5:1 on {page.url}: {low}"
    await page.focus(".skip")
    await page.keyboard.press("Tab")  # from the skip link onto the product name, by keyboard
    outline = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2, f"no visible focus on {page.url}: {outline}"


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = SCREENSHOTS / f"{name}-{width}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
