"""The capture directory: ``arrays.npz`` (pooled per-molecule features, per-channel statistics,
outputs, targets, errors), ``meta.json`` and ``summary.csv``; and the loader that reads it back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import IrrepprobeError
from ..fileio import save_csv, save_json, save_npz

DEAD_FRACTION_OF_MAX = 1e-3
SUMMARY_COLUMNS = ["point", "block", "l", "parity", "mul", "mean_norm", "mean_sq_norm", "norm_share",
                   "dead_fraction"]


def summary_table(channel_stats: dict, block_info: dict) -> pd.DataFrame:
    """One row per (point, block): multiplicity, mean norm, norm share (mean squared norm of the block
    over the point's total) and the fraction of dead channels (mean norm < 1e-3 of the block's largest)."""
    rows = []
    for (point, block), s in channel_stats.items():
        l, parity, mul = block_info[(point, block)]
        largest = float(s["mean"].max())
        dead = float(np.mean(s["mean"] <= DEAD_FRACTION_OF_MAX * largest)) if largest > 0 else 1.0
        rows.append({"point": point, "block": block, "l": l, "parity": "e" if parity == 1 else "o", "mul": mul,
                     "mean_norm": float(s["mean"].mean()), "mean_sq_norm": float(s["mean_sq"].sum()),
                     "dead_fraction": dead})
    df = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "norm_share"])
    total = df.groupby("point")["mean_sq_norm"].transform("sum")
    df.insert(7, "norm_share", (df["mean_sq_norm"] / total.where(total > 0)).fillna(0.0))
    return df


def write_capture(out: Path, arrays: dict[str, np.ndarray], meta: dict, summary: pd.DataFrame) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_npz(arrays, out / "arrays.npz")
    save_csv(summary, out / "summary.csv")
    save_json(meta, out / "meta.json")  # last: its presence marks a complete capture
    return out


@dataclass
class Capture:
    """A capture read back: ``meta`` (dict), ``summary`` (DataFrame) and arrays by name."""

    path: Path
    meta: dict
    summary: pd.DataFrame
    arrays: dict[str, np.ndarray]

    def __repr__(self) -> str:
        m = self.meta
        return (f"Capture({str(self.path)!r}: {m.get('adapter', 'irrepprobe')} model {m.get('model', m.get('checkpoint'))}, "
                f"{m['n_molecules']} structures of {m.get('data', m.get('split'))}, points {', '.join(self.points)}, "
                f"{len(self.arrays)} arrays)")

    @property
    def points(self) -> list[str]:
        """Point names in forward order (``meta.json`` keeps its keys sorted, so the order is stored)."""
        return list(self.meta.get("point_order") or self.meta["points"])

    def blocks(self, point: str) -> list[str]:
        return [b["name"] for b in self.meta["points"][point]["blocks"]]

    def pooled(self, point: str, block: str, kind: str = "norm_mean") -> np.ndarray:
        """Per-molecule pooled features of a block: ``norm_sum``/``norm_mean`` [molecules, mul];
        ``value_sum``/``value_mean`` for scalars; ``vector_sum`` [molecules, mul, 2l+1] for l > 0."""
        key = f"mol/{point}/{block}/{kind}"
        if key not in self.arrays:
            raise IrrepprobeError(f"capture has no {kind!r} for {point} {block}")
        return self.arrays[key]

    def channels(self, point: str, block: str) -> pd.DataFrame:
        """Per channel: mean, variance, min and max of the norm over all atoms."""
        return pd.DataFrame({k: self.arrays[f"chan/{point}/{block}/{k}"] for k in ("mean", "var", "min", "max")})

    @property
    def outputs(self) -> np.ndarray:
        return self.arrays["output"]

    @property
    def targets(self) -> np.ndarray:
        return self.arrays["target"]

    @property
    def errors(self) -> np.ndarray:
        return self.arrays["error"]


def load_capture(path) -> Capture:
    path = Path(path)
    if not (path / "meta.json").exists():
        raise IrrepprobeError(f"{path} is not a capture directory (no meta.json)")
    try:
        meta = json.loads((path / "meta.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        summary = pd.read_csv(path / "summary.csv")
    except Exception as e:
        raise IrrepprobeError(f"cannot read capture {path}: {str(e).splitlines()[0] if str(e) else e!r}") from None
    return Capture(path, meta, summary, arrays)
