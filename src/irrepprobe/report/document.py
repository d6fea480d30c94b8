"""One report, two renderings: ``report.md`` (figures linked) and a self-contained ``report.html``
(figures embedded as data URIs). A report is a list of parts: headings, paragraphs, tables, figures, and
folds: every part after ``fold(title)`` up to the next fold (or ``unfold()``) sits in a ``<details>``
element, closed until the reader opens it (GitHub renders it in Markdown too)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..fileio import save_text


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return str(v)


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
                cols = [str(c) for c in df.columns]
                out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                out += ["| " + " | ".join(_fmt(x) for x in row) + " |" for row in df.itertuples(index=False)]
                out += (["", f"Table: [{csv}]({csv})"] if csv else []) + [""]
            elif kind == "figure":
                png, caption = v
                rel = png.relative_to(root)
                out += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}* ([SVG]({rel.with_suffix('.svg').as_posix()}))", ""]
        return "\n".join(out + (["</details>", ""] if folded else []))

    def html(self) -> str:
        body, folded = [f"<h1>{html.escape(self.title)}</h1>"], False
        for kind, v in self.parts:
            if kind == "fold":
                body += ["</details>"] if folded else []
                body += [f"<details><summary>{html.escape(v)}</summary>"] if v else []
                folded = bool(v)
            elif kind == "h2":
                body.append(f"<h2>{html.escape(v)}</h2>")
            elif kind == "p":
                body.append(f"<p>{html.escape(v)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in v) + "</ul>")
            elif kind == "table":
                df, _ = v
                body.append(df.to_html(index=False, float_format=_fmt, na_rep="", border=0, classes="t"))
            elif kind == "figure":
                png, caption = v
                data = base64.b64encode(png.read_bytes()).decode()
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "img{max-width:100%}table.t{border-collapse:collapse;font-size:13px;margin:1em 0}"
                 "table.t td,table.t th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}"
                 "figcaption{font-style:italic;color:#444}"
                 "details{margin:.5em 0}summary{cursor:pointer;font-weight:600;font-size:1.1em}")
        body += ["</details>"] if folded else []
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")

    def write(self, out: Path) -> tuple[Path, Path]:
        md = save_text(self.markdown(out), out / "report.md")
        page = save_text(self.html(), out / "report.html")
        return md, page
