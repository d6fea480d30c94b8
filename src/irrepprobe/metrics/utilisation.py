"""Does the model use a block? Causal answer by ablation, first-order answer by gradient x activation.

Both rerun the captured model through its adapter and go through the capture hooks
(:func:`irrepprobe.capture.hooked`): ablation zeroes a block at its point so every later module sees
zero; attribution keeps the point's tensor in the autograd graph.

Two scores, by what the data holds:

* ``error``: the structures carry a label of the model's own quantity: the relative increase of the
  MAE, ``(mae_ablated - mae) / mae``;
* ``shift``: no such label (e.g. a PBE potential on QM9's B3LYP molecules): how far ablation moves the
  model's own prediction, the mean absolute change (per atom for extensive quantities such as energy)
  over the mean absolute deviation of the prediction over the data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded, predict_all
from ..capture import Capture, blocks, model_of, structures_of
from ..errors import IrrepprobeError
from ..runtime import resolve_device
from .ablation import ablation
from .attribution import grad_x_activation, reachable
from .denominators import apply_checks, denominator_checks
from .features import hidden_points
from .interventions import leading
from .scores import ForceScorer, Scorer, composition_baseline
from .verdicts import THRESHOLD, outcomes, verdicts

def predictions(model: Loaded, batches, hooks=()) -> torch.Tensor:
    """[structures, k] predictions over ``batches`` with ``hooks`` in place."""
    return predict_all(model, batches, hooks=hooks)[0]


QUANTITIES = ("energy", "forces", "both")
# A block below this share of its point's mean squared norm, whose first-order effect on the output is
# below DEGENERATE_EFFECT of the error (or spread), is degenerate: a collapsed block (norms of 1e-40 with
# gradients of 1e-16), neither used nor a finding about "unused"
DEGENERATE_SHARE, DEGENERATE_EFFECT = 1e-12, 1e-9


def degenerate(cap: Capture, table: pd.DataFrame) -> list[bool]:
    """Per row of ``table``: whether its block is degenerate (negligible norms and gradients)."""
    share = cap.summary.set_index(["point", "block"])["norm_share"]
    effect = table["grad_x_activation_relative"].fillna(0).abs()
    return [p != "all" and float(share.get((p, b), 1.0)) < DEGENERATE_SHARE and e < DEGENERATE_EFFECT
            for p, b, e in zip(table["point"], table["block"], effect)]


def capture_means(cap: Capture, points) -> dict[str, torch.Tensor]:
    """Per node point, the per-channel mean over every captured atom of its l = 0 columns (zero for
    l > 0: their rotation average), from the capture's pooled sums: the ``mean`` intervention's baseline
    without a pass over the data."""
    atoms = float(cap.arrays["n_atoms"].sum())
    out = {}
    for p in points:
        if p.kind != "node" or p.name not in cap.meta["points"]:
            continue
        mean = torch.zeros(p.irreps.dim, dtype=torch.float64)
        for b in blocks(p.irreps):
            if b.l == 0:
                mean[b.index] = torch.as_tensor(cap.pooled(p.name, b.name, "value_sum").sum(0) / atoms,
                                                dtype=torch.float64)
        out[p.name] = mean
    return out


def utilisation(cap: Capture, model=None, molecules: int | None = 2000, device: str = "auto",
                batch_size: int = 64, cache_dir: str | None = None, trust: bool | None = None,
                interventions=("zero",), threshold: float = THRESHOLD, seed: int = 0,
                n_boot: int = 1000, quantity: str = "both", first_look: int | None = None,
                attribution_molecules: int | None = None) -> pd.DataFrame:
    """Ablation utilisation (raw and scale-free with paired bootstrap intervals, under each of
    ``interventions``), gradient x activation and reachability of every hidden point of ``cap``, on its
    first ``molecules`` structures, rerunning the captured model through its adapter.

    ``quantity``: ``energy`` (the model's own quantity), ``forces`` or ``both`` (forces only where the
    family computes them: against the data's per-atom ``forces`` label when it has one, else the shift
    of the model's own forces). ``first_look``: the sequential rule of :func:`ablation` (None: every
    ablation on every structure). ``attribution_molecules``: gradient x activation on the first so many
    (default: all). Rows whose denominator degenerates are flagged by :func:`denominator_checks`, which
    leaves their relative and scale-free numbers out."""
    if quantity not in QUANTITIES:
        raise IrrepprobeError(f"unknown quantity {quantity!r}; valid: {', '.join(QUANTITIES)}")
    loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
    if quantity == "forces" and not loaded.adapter.has_forces:
        raise IrrepprobeError(f"--quantity forces: the {loaded.adapter.name} family computes no forces")
    by_name = {p.name: p for p in loaded.adapter.points(loaded)}
    points = [by_name[p] for p in hidden_points(cap) if p in by_name]
    rows = np.arange(len(cap.arrays["index"]))[:molecules]
    structures = structures_of(cap, cache_dir).take(rows)
    batches = list(loaded.adapter.batches(loaded, structures, batch_size))
    base = predictions(loaded, batches)
    target = cap.arrays["target"][rows] if "target" in cap.arrays else None
    comp = composition_baseline(cap)
    scorer = Scorer(base, target, cap.arrays["n_atoms"][rows], cap.meta["quantity"]["per_atom"],
                    None if comp is None else comp[rows], name=cap.meta["quantity"]["name"])
    forces = None
    if quantity in ("forces", "both") and loaded.adapter.has_forces and loaded.adapter.forces(loaded, batches[0]) is not None:
        labels = structures.atom_labels.get("forces")
        forces = ForceScorer(labels if labels is not None and labels.shape[1:] == (3,) else None)
    table = ablation(loaded, batches, points, scorer, interventions=interventions, seed=seed, n_boot=n_boot,
                     forces=forces, first_look=first_look, threshold=threshold, means=capture_means(cap, points),
                     numbers=structures.numbers)
    if quantity == "forces":
        table = table[table["quantity"] == "forces"].reset_index(drop=True)
    gxa = grad_x_activation(loaded, leading(batches, attribution_molecules), points)
    table = table.merge(gxa, on=["point", "block"], how="left")
    table["grad_x_activation_relative"] = table["grad_x_activation"] / (
        table["base_mae"] if scorer.kind == "error" else scorer.spread)
    reach = reachable(loaded, structures, points, seed=seed)
    table["reachable"] = [reach.get((p, b), True) for p, b in zip(table["point"], table["block"])]
    table["degenerate"] = degenerate(cap, table)
    table["molecules"] = len(rows)
    table = apply_checks(table, denominator_checks(cap, table))
    table["used"] = verdicts(table, threshold)
    table["dependence"] = outcomes(table, threshold)
    return table[[c for c in table if c != "edits"] + ["edits"]]  # the edits each row rests on, last
