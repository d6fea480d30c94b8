"""The report's figures, drawn from metric tables; each saved as PNG and SVG."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..fileio import atomic_write  # noqa: E402


def save(fig, out: Path, name: str) -> Path:
    """``out/name.png`` and ``out/name.svg``, written atomically; returns the PNG path."""
    # A fixed salt and no date make a redrawn SVG byte-identical, so rerunning a report leaves unchanged
    # figures out of the diff; the salt is set only around our own savefig, not in the user's rcParams.
    with matplotlib.rc_context({"svg.hashsalt": "irrepprobe"}):
        for ext in ("svg", "png"):
            atomic_write(out / f"{name}.{ext}", lambda tmp, ext=ext: fig.savefig(
                tmp, format=ext, dpi=SAVE_DPI, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None))
    plt.close(fig)
    return out / f"{name}.png"


def block_order(names) -> list[str]:
    """Blocks by l, then even before odd: 0e, 0o, 1o, 1e, 2e, ..."""
    return sorted(set(names), key=lambda b: (int(b[:-1]), b[-1] != ("e" if int(b[:-1]) % 2 == 0 else "o")))


def grid(df: pd.DataFrame, value: str, rows: list[str], row_col: str = "point") -> pd.DataFrame:
    g = df.pivot_table(index=row_col, columns="block", values=value, aggfunc="first")
    return g.reindex(index=rows, columns=block_order(df["block"]))


# report.html shows a figure at most this wide (its body, 1,100 px less padding) and at most at its own
# size; SAVE_DPI is what save() writes. Text is sized from both so that it reads at >= MIN_PX on screen.
PAGE_PX, SAVE_DPI, MIN_PX = 1068, 130, 10.5


def readable_pt(fig, px: float = MIN_PX) -> float:
    """The smallest font size in points that ``fig`` shows at ``px`` pixels or more in report.html."""
    width = fig.get_size_inches()[0] * SAVE_DPI
    return px * 72 / SAVE_DPI / min(1.0, PAGE_PX / width)


def _heat(ax, g: pd.DataFrame, title: str, unit: str, cmap: str, vmin=None, vmax=None, fmt="{:.2f}",
          marks: pd.DataFrame | None = None, text: pd.DataFrame | None = None):
    """A heatmap with each cell's value written in it (black or white by the cell colour's luminance);
    ``marks``: a grid of words written under the value (e.g. "unused"); ``text``: the values to write
    where they differ from those coloured (a clipped scale). The colour bar sits below the panel, its label
    under it, so it never reads as a neighbouring panel's axis."""
    data = g.to_numpy(dtype=float)
    shown = data if text is None else text.reindex_like(g).to_numpy(dtype=float)
    masked = np.ma.masked_invalid(data)
    cm = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(masked, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    size = readable_pt(ax.figure)
    ax.set_xticks(range(g.shape[1]), [f"{c}\n(l={c[:-1]})" for c in g.columns])
    ax.set_yticks(range(g.shape[0]), g.index)
    ax.tick_params(labelsize=size)
    ax.set_xlabel("block (l and parity)", fontsize=size)
    ax.set_title(title, fontsize=size + 1)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            mark = marks.iat[i, j] if marks is not None and isinstance(marks.iat[i, j], str) else ""
            if not np.isfinite(shown[i, j]) and not mark:
                continue
            r, gr, b, _ = cm(im.norm(data[i, j])) if np.isfinite(data[i, j]) else (0.87, 0.87, 0.87, 1)
            cell = (fmt.format(shown[i, j]) if np.isfinite(shown[i, j]) else "") + (f"\n{mark}" if mark else "")
            ax.text(j, i, cell.strip(), ha="center", va="center", fontsize=size,
                    color="white" if 0.299 * r + 0.587 * gr + 0.114 * b < 0.5 else "black")
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.08, pad=0.02, aspect=40,
                             location="bottom")
    bar.set_label(unit, fontsize=size)
    bar.ax.tick_params(labelsize=size)


CLIP = 200.0  # per cent: the top of the utilisation colour scale


def utilisation_heatmap(norm_grid, util_grid, sel_grid, title: str, target: str, threshold: float,
                        marks: pd.DataFrame | None = None, unit: str = "% of what the model learned beyond composition"):
    """Utilisation (percent, with unused and unreachable cells marked), norm share and selectivity, one
    above the other at the page's full width, so each cell has room for its value and its mark."""
    rows = len(norm_grid)
    fig, axes = plt.subplots(3, 1, figsize=(9, 3 * (0.42 * rows + 1.7)), layout="constrained")
    values = util_grid.to_numpy(dtype=float)
    seen = values[np.isfinite(values)]
    # one cell of thousands of per cent would flatten every other: the colour scale stops at CLIP and the
    # cell still writes its own value
    top = min(CLIP, max(100.0, float(seen.max()) if seen.size else 100.0))
    over = pd.DataFrame([["beyond scale" if v > top else "" for v in row] for row in values],
                        index=util_grid.index, columns=util_grid.columns)
    if marks is not None:
        over = over.where(over != "", marks.reindex_like(util_grid).fillna(""))
    _heat(axes[0], util_grid.clip(upper=top), f"utilisation, zeroed (unused: interval below {100 * threshold:g}%)",
          unit + f"; colour scale clipped at {top:.0f}%", "magma_r", 0, top, fmt="{:,.0f}%",
          marks=over.replace("", np.nan), text=util_grid)
    _heat(axes[1], norm_grid, "norm share", "fraction of the layer's mean squared norm", "viridis", 0, 1)
    _heat(axes[2], sel_grid, f"probe selectivity for {target}", "R2 trained - R2 untrained", "RdBu_r", -1, 1)
    fig.suptitle(title, fontsize=readable_pt(fig) + 1)
    return fig


def probe_heatmap(r2_grid, sel_grid, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(r2_grid) + 3), layout="constrained")
    _heat(axes[0], r2_grid, "probe R2 (5-fold, ridge)", "out-of-fold R2", "viridis", 0, 1)
    _heat(axes[1], sel_grid, "selectivity", "R2 trained - R2 untrained", "RdBu_r", -1, 1)
    axes[1].set_yticklabels([])
    fig.suptitle(title, fontsize=readable_pt(fig) + 1)
    return fig


def latent_maps(maps: list[dict], title: str):
    """``maps``: one dict per block with ``block``, ``xy`` [n, 2] and ``colours``: two
    (name, values, label, colour map) to colour the points by. Points are drawn in order of their value,
    so the largest lie on top (with a colour map whose large values are dark, they stand out on white)."""
    fig, axes = plt.subplots(len(maps), 2, figsize=(10, 4.2 * len(maps)), squeeze=False, layout="constrained")
    size = readable_pt(fig)
    for row, m in zip(axes, maps):
        for ax, (key, values, label, cmap) in zip(row, m["colours"]):
            lo, hi = np.percentile(values, [2, 98])
            order = np.argsort(values, kind="stable")
            sc = ax.scatter(m["xy"][order, 0], m["xy"][order, 1], c=values[order], s=5, cmap=cmap, vmin=lo, vmax=hi,
                            linewidths=0)
            bar = fig.colorbar(sc, ax=ax)
            bar.set_label(label, fontsize=size)
            bar.ax.tick_params(labelsize=size)
            ax.set_title(f"{m['point']} {m['block']} (l={m['block'][:-1]}) coloured by {key}", fontsize=size)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=size + 1)
    return fig


def cka_heatmap(cka: pd.DataFrame, title: str, xlabel: str = "point", ylabel: str = "point",
                unit: str = "debiased CKA"):
    fig, ax = plt.subplots(figsize=(min(1.1 * cka.shape[1] + 3, 12), 0.8 * cka.shape[0] + 3), layout="constrained")
    _heat(ax, cka, title, unit, "viridis", 0, 1)
    ax.set_xticks(range(cka.shape[1]), cka.columns, rotation=30, ha="right", fontsize=readable_pt(fig))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig
