"""One report, two renderings: ``report.md`` (figures linked) and a self-contained ``report.html``:
the same markdown rendered by markdown-it-py (CommonMark with GitHub's tables, as GitHub shows
report.md), figures embedded as data URIs, every table in a box that scrolls sideways on its own so the
page keeps its width, the links to CSV tables and SVG figures kept. A report is a list of parts: headings,
paragraphs, tables, figures, and folds: every part after ``fold(title)`` up to the next fold (or ``unfold()``) sits in a ``<details>``
element, closed until the reader opens it (GitHub renders it in Markdown too)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from ..fileio import save_text


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
         "img{max-width:100%;height:auto}div.scroll{overflow-x:auto;max-width:100%;margin:1em 0}"
         "table{border-collapse:collapse;font-size:13px}th{background:#f4f4f4;position:sticky;top:0}"
         "td,th{border-bottom:1px solid #ddd;padding:2px 8px;vertical-align:top}th{white-space:nowrap}"
         "code{background:#f4f4f4;padding:0 3px;border-radius:3px;font-size:90%}"
         "details{margin:.6em 0}summary{cursor:pointer;font-weight:600;font-size:1.1em}"
         "p>em:only-child{color:#444}")


def _cell(v) -> str:
    """A value as one markdown table cell: no pipe or newline may end the cell or the row early."""
    return str(v).replace("|", "\\|").replace("\n", " ")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return str(v)


def render(markdown: str, root: Path, title: str) -> str:
    """A report's markdown as one self-contained HTML page: PNG figures under ``root`` embedded, every
    table in its own sideways-scrolling box, links (CSV tables, SVG figures) kept relative to ``root``."""
    md = MarkdownIt("commonmark", {"html": True}).enable("table")

    def wrap_open(r, tokens, idx, options, env):
        return '<div class="scroll">' + r.renderToken(tokens, idx, options, env)

    def wrap_close(r, tokens, idx, options, env):
        return r.renderToken(tokens, idx, options, env) + "</div>"

    def embed(r, tokens, idx, options, env):
        src = Path(root) / tokens[idx].attrGet("src")
        if src.suffix == ".png" and src.is_file():
            tokens[idx].attrSet("src", "data:image/png;base64," + base64.b64encode(src.read_bytes()).decode())
        return r.image(tokens, idx, options, env)

    md.add_render_rule("table_open", wrap_open)
    md.add_render_rule("table_close", wrap_close)
    md.add_render_rule("image", embed)
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{md.render(markdown)}"
            "</body></html>\n")


@dataclass
class Document:
    title: str
    parts: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str):
        self.parts.append(("h2", text))

    def text(self, text: str):
        self.parts.append(("p", text))

    def bullets(self, items: list[str]):
        self.parts.append(("ul", items))

    def table(self, df: pd.DataFrame, csv_name: str | None = None):
        self.parts.append(("table", (df, csv_name)))

    def figure(self, png: Path, caption: str):
        self.parts.append(("figure", (Path(png), caption)))

    def fold(self, title: str):
        self.parts.append(("fold", title))

    def unfold(self):
        self.parts.append(("fold", None))

    def markdown(self, root: Path) -> str:
        out, folded = [f"# {self.title}", ""], False
        for kind, v in self.parts:
            if kind == "fold":
                out += ["</details>", ""] if folded else []
                out += [f"<details><summary>{html.escape(v)}</summary>", ""] if v else []
                folded = bool(v)
            elif kind == "h2":
                out += [f"## {v}", ""]
            elif kind == "p":
                out += [v, ""]
            elif kind == "ul":
                out += [f"- {i}" for i in v] + [""]
            elif kind == "table":
                df, csv = v
                link = [f"Table: [{csv}]({csv})"] if csv else []
                if not len(df):
                    out += ["*No rows.*" + (f" ({link[0]})" if link else ""), ""]
                    continue
                cols = [_cell(c) for c in df.columns]
                align = ["---:" if pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) else "---"
                         for t in df.dtypes]
                out += ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]
                out += ["| " + " | ".join(_cell(_fmt(x)) for x in row) + " |" for row in df.itertuples(index=False)]
                out += ([""] + link if link else []) + [""]
            elif kind == "figure":
                png, caption = v
                rel = png.relative_to(root)
                out += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}* ([SVG]({rel.with_suffix('.svg').as_posix()}))", ""]
        return "\n".join(out + (["</details>", ""] if folded else []))

    def html(self, root: Path) -> str:
        """``report.md`` rendered to one self-contained page (figures under ``root`` embedded)."""
        return render(self.markdown(root), root, self.title)

    def write(self, out: Path) -> tuple[Path, Path]:
        md = save_text(self.markdown(out), out / "report.md")
        page = save_text(self.html(out), out / "report.html")
        return md, page
