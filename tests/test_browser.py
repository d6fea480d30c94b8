"""The report's pages as their reader gets them: report.html and explore.html opened in a real headless
Chromium with the network blocked. Fails on a load or console error, raw markdown in the visible text,
a page wider than its window, a figure or viewer that does not show. CI installs Debian's chromium."""
from pathlib import Path

import pytest

from browser import chromium, open_page, raw_markdown

pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium (CI installs Debian's chromium)")

REPORTS = Path(__file__).parents[1] / "reports"
# chemiscope's viewer draws inside shadow roots: look through them. A structure drawn (its 3-D canvas), the
# map drawn (plotly's canvas) and the map's axis titles.
DEEP = ("((id, sel) => { const found = []; const walk = (root) => { root.querySelectorAll(sel).forEach(e => "
        "found.push(e)); root.querySelectorAll('*').forEach(e => e.shadowRoot && walk(e.shadowRoot)); }; "
        "walk(document.getElementById(id)); return found; })")
EXPLORE = {"structure": f"{DEEP}('chemiscope-structure', 'canvas').length",
           "map": f"{DEEP}('chemiscope-map', 'canvas').length",
           "axes": f"{DEEP}('chemiscope-map', '.xtitle, .ytitle').map(e => e.textContent)",
           "message": "document.getElementById('message').textContent"}
REPORT = {"images": "Array.from(document.images).map(i => i.naturalWidth > 0 && i.complete)",
          "links": "Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))",
          "widest_table": "Math.max(0, ...Array.from(document.querySelectorAll('table')).map(t => t.scrollWidth))",
          "body": "document.body.clientWidth"}


def check_report(path: Path, shot: Path | None = None):
    seen = open_page(path, evaluate=REPORT, screenshot=shot)
    assert not seen.errors, seen.errors
    assert not raw_markdown(seen.text), raw_markdown(seen.text)[:5]
    assert seen.page_width <= seen.view_width, f"{path}: page {seen.page_width} px wide in a {seen.view_width} px window"
    assert seen.values["images"] and all(seen.values["images"]), "a figure did not load"
    return seen


def check_explore(path: Path, shot: Path | None = None):
    seen = open_page(path, wait_for="document.body.dataset.loaded", evaluate=EXPLORE, screenshot=shot)
    assert not seen.errors, seen.errors
    assert seen.values["message"] == "", seen.values["message"]
    assert seen.values["structure"] >= 1 and seen.values["map"] >= 1, seen.values
    return seen


def test_the_report_page_renders_its_markdown_fits_and_links_its_files(report):
    out = report["out"]
    seen = check_report(out / "report.html")
    links = seen.values["links"]
    csv = [h for h in links if h.endswith(".csv")]
    svg = [h for h in links if h.endswith(".svg")]
    assert len(csv) >= 8 and len(svg) >= 4 and "explore.html" in links
    assert all((out / h).is_file() for h in csv + svg)
    assert seen.values["widest_table"] > seen.values["body"]  # the 20-odd-column utilisation table scrolls in its box
    assert "l=1" in seen.text and "Summary" in seen.text


def test_explore_opens_offline_on_the_best_map_with_a_structure(report):
    seen = check_explore(report["out"] / "explore.html")
    assert any(a.startswith("map ") for a in seen.values["axes"]), seen.values["axes"]


def test_a_broken_dataset_is_an_error_the_test_would_see(report, tmp_path):
    """The check itself: a dataset whose map names a property that is not there must fail to show."""
    from irrepprobe.study import explore

    data = explore.read(report["out"] / "chemiscope.json.gz")
    data["settings"]["map"]["x"]["property"] = "no such property"
    page = explore.write(data, tmp_path)
    seen = open_page(page, wait_for="document.body.dataset.loaded", evaluate=EXPLORE)
    assert seen.errors or seen.values["message"]


def test_raw_markdown_in_a_page_is_caught(tmp_path):
    page = tmp_path / "raw.html"
    page.write_text("<!doctype html><html><body><p>**l=1: needed** and `code`</p></body></html>")
    assert raw_markdown(open_page(page).text)


@pytest.mark.parametrize("path", sorted(REPORTS.rglob("report.html")), ids=lambda p: str(p.parent.relative_to(REPORTS)))
def test_every_committed_report_page_opens(path):
    check_report(path)


@pytest.mark.parametrize("path", sorted(REPORTS.rglob("chemiscope.json.gz")), ids=lambda p: str(p.parent.relative_to(REPORTS)))
def test_every_committed_chemiscope_file_opens_in_chemiscope(path):
    check_explore(path.parent / "explore.html")
