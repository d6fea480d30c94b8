"""Bring committed reports up to what their readers' tools accept, without measuring anything again:
each ``report.html`` rendered anew from its ``report.md`` (the renderer of irrepprobe.report.document:
markdown rendered, tables in scroll boxes, figures embedded, links kept), and each ``chemiscope.json.gz``
given ``settings.target = "structure"`` (chemiscope's viewer refuses it otherwise) with an ``explore.html``
beside it. Numbers, tables and figures are left as they are.

    python analyses/reports/rerender.py [reports]    # every report under the folder
"""
import sys
from pathlib import Path

from irrepprobe.fileio import save_text
from irrepprobe.report.document import render
from irrepprobe.study import explore


def main(root: Path) -> None:
    for page in sorted(root.rglob("report.html")):
        md = page.with_name("report.md")
        if not md.is_file():
            continue
        text = md.read_text()
        title = text.splitlines()[0].lstrip("# ").strip() if text.startswith("# ") else md.parent.name
        save_text(render(text, md.parent, title), page)
        print(f"rendered {page}")
    for path in sorted(root.rglob("chemiscope.json.gz")):
        data = explore.structure_target(explore.read(path))
        explore.write_input(data, path)
        explore.write(data, path.parent)
        print(f"target set in {path}; wrote {path.parent / explore.FILE}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports"))
