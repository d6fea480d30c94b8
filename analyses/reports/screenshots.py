"""Screenshots of a report's two pages as Chromium shows them (the README's "Reading a report"):
``DIR/screenshots/report.png`` (report.html, first screen) and ``DIR/screenshots/explore.png``
(explore.html, the viewer loaded). Needs Debian's chromium and playwright (the test extra).

    python analyses/reports/screenshots.py reports/example
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "tests"))
from browser import open_page  # noqa: E402  (the browser tests' own driver)

root = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/example")
shots = root / "screenshots"
shots.mkdir(exist_ok=True)
seen = open_page(root / "report.html", screenshot=shots / "report.png", width=1280, height=1000)
print(f"report.html: {len(seen.errors)} errors -> {shots / 'report.png'}")
seen = open_page(root / "explore.html", wait_for="document.body.dataset.loaded", screenshot=shots / "explore.png",
                 width=1280, height=800)
print(f"explore.html: {len(seen.errors)} errors -> {shots / 'explore.png'}")
