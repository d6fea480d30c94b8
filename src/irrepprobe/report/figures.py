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
                tmp, format=ext, dpi=130, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None))
    plt.close(fig)
    return out / f"{name}.png"


def block_order(names) -> list[str]:
    """Blocks by l, then even before odd: 0e, 0o, 1o, 1e, 2e, ..."""
    return sorted(set(names), key=lambda b: (int(b[:-1]), b[-1] != ("e" if int(b[:-1]) % 2 == 0 else "o")))


def grid(df: pd.DataFrame, value: str, rows: list[str], row_col: str = "point") -> pd.DataFrame:
    g = df.pivot_table(index=row_col, columns="block", values=value, aggfunc="first")
    return g.reindex(index=rows, columns=block_order(df["block"]))


def _heat(ax, g: pd.DataFrame, title: str, unit: str, cmap: str, vmin=None, vmax=None, fmt="{:.2f}",
          marks: pd.DataFrame | None = None):
    """A heatmap with each cell's value written in it (black or white by the cell colour's luminance);
    ``marks``: a grid of words written under the value (e.g. "unused")."""
    data = g.to_numpy(dtype=float)
    masked = np.ma.masked_invalid(data)
    cm = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(masked, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(g.shape[1]), [f"{c}\n(l={c[:-1]})" for c in g.columns])
    ax.set_yticks(range(g.shape[0]), g.index)
    ax.set_xlabel("block (l and parity)")
    ax.set_title(title, fontsize=10)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            mark = marks.iat[i, j] if marks is not None and isinstance(marks.iat[i, j], str) else ""
            if not np.isfinite(data[i, j]) and not mark:
                continue
            r, gr, b, _ = cm(im.norm(data[i, j])) if np.isfinite(data[i, j]) else (0.87, 0.87, 0.87, 1)
            text = (fmt.format(data[i, j]) if np.isfinite(data[i, j]) else "") + (f"\n{mark}" if mark else "")
            ax.text(j, i, text.strip(), ha="center", va="center", fontsize=7 if mark else 8,
                    color="white" if 0.299 * r + 0.587 * gr + 0.114 * b < 0.5 else "black")
    ax.figure.colorbar(im, ax=ax, label=unit, fraction=0.046, pad=0.04)


CLIP = 200.0  # per cent: the top of the utilisation colour scale


def utilisation_heatmap(norm_grid, util_grid, sel_grid, title: str, target: str, threshold: float,
                        marks: pd.DataFrame | None = None, unit: str = "% of what the model learned beyond composition"):
    """Norm share, utilisation (percent, with unused and unreachable cells marked) and selectivity."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.62 * len(norm_grid) + 2.6))
    _heat(axes[0], norm_grid, "norm share", "fraction of the layer's mean squared norm", "viridis", 0, 1)
    values = util_grid.to_numpy(dtype=float)
    seen = values[np.isfinite(values)]
    # one cell of thousands of per cent would flatten every other: the scale stops at CLIP, the cell says so
    top = min(CLIP, max(100.0, float(seen.max()) if seen.size else 100.0))
    over = pd.DataFrame([[f"beyond scale: {v:,.0f}%" if v > top else "" for v in row] for row in values],
                        index=util_grid.index, columns=util_grid.columns)
    if marks is not None:
        over = over.where(over != "", marks.reindex_like(util_grid).fillna(""))
    _heat(axes[1], util_grid.clip(upper=top), f"utilisation, zeroed (unused: interval below {100 * threshold:g}%)",
          unit + f"; scale clipped at {top:.0f}%", "magma_r", 0, top, fmt="{:.0f}%",
          marks=over.replace("", np.nan))
    _heat(axes[2], sel_grid, f"probe selectivity for {target}", "R2 trained - R2 untrained", "RdBu_r", -1, 1)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title, fontsize=11)
    return fig


def probe_heatmap(r2_grid, sel_grid, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(r2_grid) + 2.2))
    _heat(axes[0], r2_grid, "probe R2 (5-fold, ridge)", "out-of-fold R2", "viridis", 0, 1)
    _heat(axes[1], sel_grid, "selectivity", "R2 trained - R2 untrained", "RdBu_r", -1, 1)
    axes[1].set_yticklabels([])
    fig.suptitle(title, fontsize=11)
    return fig


def latent_maps(maps: list[dict], title: str):
    """``maps``: one dict per block with ``block``, ``xy`` [n, 2] and ``colours``: two
    (name, values, label, colour map) to colour the points by."""
    fig, axes = plt.subplots(len(maps), 2, figsize=(10, 4.2 * len(maps)), squeeze=False)
    for row, m in zip(axes, maps):
        for ax, (key, values, label, cmap) in zip(row, m["colours"]):
            lo, hi = np.percentile(values, [2, 98])
            sc = ax.scatter(m["xy"][:, 0], m["xy"][:, 1], c=values, s=4, cmap=cmap, vmin=lo, vmax=hi, linewidths=0)
            fig.colorbar(sc, ax=ax, label=label)
            ax.set_title(f"{m['point']} {m['block']} (l={m['block'][:-1]}) coloured by {key}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def cka_heatmap(cka: pd.DataFrame, title: str, xlabel: str = "point", ylabel: str = "point",
                unit: str = "debiased CKA"):
    fig, ax = plt.subplots(figsize=(1.1 * cka.shape[1] + 3, 0.8 * cka.shape[0] + 2))
    _heat(ax, cka, title, unit, "viridis", 0, 1)
    ax.set_xticks(range(cka.shape[1]), cka.columns, rotation=30, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig
