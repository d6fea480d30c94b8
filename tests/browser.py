"""Open a page in a real headless Chromium (Debian's, driven by Playwright) with the network blocked, and
say what its reader gets: load and console errors, the visible text, and how wide it lays out."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# The flags Chromium needs on a machine with no network and no GPU (software WebGL for chemiscope's 3-D view)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader"]
# Console lines that are the headless GPU emulation talking, not the page
NOISE = re.compile(r"GL Driver Message|GPU stall|WebGL|swiftshader|Automatic fallback to software", re.I)
# Markdown a renderer should have turned into markup: bold, inline code, a table row, a heading, a link
RAW_MARKDOWN = re.compile(r"\*\*[^*\n]+\*\*|`[^`\n]+`|^\|.*\|$|^#{1,6} |\]\([^)\s]+\)", re.M)


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Seen:
    errors: list[str] = field(default_factory=list)  # page errors, failed requests, console errors/warnings
    text: str = ""  # innerText of the body with every <details> opened
    page_width: int = 0  # document scroll width
    view_width: int = 0
    values: dict = field(default_factory=dict)


_SHARED: dict = {}


def _browser():
    """One Chromium for the whole process (a fresh context per page), closed at exit."""
    if "browser" not in _SHARED:
        import atexit

        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        _SHARED["browser"] = pw.chromium.launch(executable_path=chromium(), args=ARGS)
        atexit.register(lambda: (_SHARED.pop("browser").close(), pw.stop()))
    return _SHARED["browser"]


def open_page(path: Path, wait_for: str | None = None, evaluate: dict | None = None, screenshot: Path | None = None,
              width: int = 1280, height: int = 900) -> Seen:
    """Load ``path`` (a file) at a ``width`` x ``height`` window; ``wait_for``: a JS expression to wait for
    (60 s); ``evaluate``: name -> JS expression, read after loading."""
    seen = Seen()
    url = Path(path).resolve().as_uri()
    page = _browser().new_page(viewport={"width": width, "height": height})
    try:
        # the network blocked: an offline page must not ask for anything but itself
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") or
                   r.request.url.startswith("data:") else r.abort())
        page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: seen.errors.append(f"request failed: {r.url[:120]}"))
        page.on("console", lambda m: seen.errors.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") and not NOISE.search(m.text) else None)
        page.goto(url, wait_until="load")
        if wait_for:
            page.wait_for_function(wait_for, timeout=60_000)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        seen.text = page.evaluate("document.body.innerText")
        seen.page_width = page.evaluate("document.documentElement.scrollWidth")
        seen.view_width = page.evaluate("document.documentElement.clientWidth")
        seen.values = {k: page.evaluate(v) for k, v in (evaluate or {}).items()}
        if screenshot:
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = false)")
            page.screenshot(path=str(screenshot))
    finally:
        page.context.close()
    return seen


def raw_markdown(text: str) -> list[str]:
    return RAW_MARKDOWN.findall(text)
