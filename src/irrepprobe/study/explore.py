"""``explore.html``: a chemiscope input as one self-contained page that opens offline in any browser, the
map beside the structures. It inlines the ``chemiscope.min.js`` that the chemiscope wheel ships (the
library its Sphinx extension and headless widget load) and the dataset itself, so nothing is fetched.

chemiscope's own loaders (widget, website, Sphinx) read ``settings.target``; without it a dataset that has
per-atom properties and environments opens in per-atom mode, where structure-level map axes do not
exist and the viewer refuses the file. :func:`structure_target` sets it where it is missing."""
from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

from ..errors import IrrepprobeError
from ..fileio import atomic_write, save_text

FILE = "explore.html"


def library() -> str:
    """The text of chemiscope's bundled viewer, from the installed wheel."""
    import chemiscope

    path = Path(chemiscope.__file__).parent / "sphinx" / "static" / "chemiscope.min.js"
    if not path.is_file():
        raise IrrepprobeError(f"chemiscope {chemiscope.__version__} ships no {path.name}: cannot write {FILE}")
    return path.read_text(encoding="utf-8")


def structure_target(data: dict) -> dict:
    """``data`` with ``settings.target`` = "structure" unless it names one (see the module's note)."""
    settings = dict(data.get("settings") or {})
    settings.setdefault("target", "structure")
    return {**data, "settings": settings}


def read(path: Path) -> dict:
    path = Path(path)
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


# The page: a title line, the map on the left, the structure and its properties on the right; errors and
# warnings of the viewer are shown above it (and sent to the console, where a browser test reads them).
_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:.6em 1em}
h1{font-size:1.1em;margin:.2em 0 .5em}
#grid{display:flex;gap:12px;height:calc(100vh - 4.5em);min-height:520px}
#left{flex:1;display:flex;flex-direction:column;min-width:0}
#right{flex:1;display:flex;flex-direction:column;min-width:0}
#chemiscope-map{flex:1;min-height:0}
#chemiscope-structure{flex:1;min-height:0}
#message{display:none;border:1px solid #d9534f;background:#f2dede;color:#a94442;padding:.5em 1em;margin-bottom:.5em}
#message.warning{border-color:#f0ad4e;background:#fcf8e3;color:#8a6d3b}
"""

_LOADER = """
function showMessage(text, kind) {
  const box = document.getElementById('message');
  box.textContent = text; box.className = kind; box.style.display = 'block';
}
function parseWithNaN(text) {  // Python's json writes NaN, which JSON.parse refuses
  return JSON.parse(text.replace(/\\bNaN\\b/g, '"***NaN***"'), (k, v) => v === '***NaN***' ? NaN : v);
}
window.addEventListener('load', async () => {
  const dataset = parseWithNaN(document.getElementById('dataset').textContent);
  const warnings = new Chemiscope.Warnings();
  warnings.addHandler((message) => { console.warn('chemiscope: ' + message); showMessage(message, 'warning'); });
  const config = {map: 'chemiscope-map', info: 'chemiscope-info', meta: 'chemiscope-meta',
                  structure: 'chemiscope-structure'};
  try {
    window.visualizer = await Chemiscope.DefaultVisualizer.load(config, dataset, warnings);
    document.body.dataset.loaded = 'yes';
  } catch (error) {
    console.error('chemiscope: ' + (error && error.message ? error.message : error));
    showMessage('chemiscope could not load this dataset: ' + (error && error.message ? error.message : error), '');
    document.body.dataset.loaded = 'failed';
  }
});
"""


def page(data: dict, title: str) -> str:
    """The HTML text of the page for the chemiscope input ``data``."""
    blob = json.dumps(structure_target(data)).replace("</", "<\\/")  # no "</script>" inside the data block
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style><script>{library()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><div id='message'></div>"
            "<div id='grid'><div id='left'><div id='chemiscope-meta'></div><div id='chemiscope-map'></div></div>"
            "<div id='right'><div id='chemiscope-structure'></div><div id='chemiscope-info'></div></div></div>"
            f"<script type='application/json' id='dataset'>{blob}</script><script>{_LOADER}</script>"
            "</body></html>\n")


def write(data: dict, out: Path, title: str | None = None) -> Path:
    """``out/explore.html`` for the chemiscope input ``data``."""
    title = title or (data.get("meta") or {}).get("name") or "chemiscope"
    return save_text(page(data, title), Path(out) / FILE)


def write_input(data: dict, path: Path) -> Path:
    """``data`` as a gzipped chemiscope input at ``path``, with the structure target set."""
    def dump(tmp):
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            json.dump(structure_target(data), f)
    return atomic_write(Path(path), dump)
