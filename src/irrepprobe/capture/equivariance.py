"""Is the model equivariant? Rotate each structure, run the model again, compare.

Which irreps a model uses means nothing if the model is not equivariant, so :func:`check_equivariance`
reruns a model on ``n`` structures, each rotated by its own random rotation ``R`` (seeded; positions
and cell together, so periodic structures stay the same crystal), through the adapter's own
:meth:`~irrepprobe.adapters.base.Adapter.batches` (the family rebuilds its graphs and cells), with
:func:`~irrepprobe.intervene.keeping` hooks on the points. Per point and block it measures, per
structure, the relative change of

* the invariants: the values of an l=0 block, the per-channel norms of an l>0 block, compared atom by
  atom (node points) as the root mean square over the structure's atoms and channels of the change
  over that of the original; edge points (whose rows the rebuilt graph may order differently) only as
  per-channel norms summed over the structure's edges;
* the features themselves (node points, l>0): the rotated run against ``D(R)`` applied to the original
  (``o3.Irrep(l, p).D_from_matrix(R)``, in e3nn's basis, on the ``mul_ir`` layout);

and the output (``D(R)`` of the quantity's irreps applied to the original: an energy is unchanged)
and the forces (``R`` applied to the original), where the family computes them. Each relative change
divides by the original's RMS, floored at :data:`FLOOR` times the RMS of the whole point (a block that
is zero by symmetry, e.g. l=1 on a perfect crystal, is ``near_zero``, and measured against the point),
and forces at :data:`FORCE_FLOOR` (force units: eV/A for every family here).

Some structures cannot show much under rotation (:func:`geometry`): a lone atom (not periodic), which a
rotation about itself leaves as it was for any model built on relative positions, and collinear atoms,
which a rotation about their line leaves as they were. The check prefers structures that can show
everything, says how many of each kind it had to use, and calls a check on lone atoms only untested
(``passed`` None), never passed.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from e3nn import o3

from ..adapters.base import Loaded, passes
from ..data.structures import Structures, atoms_of
from ..errors import IrrepprobeError
from ..intervene import Point, as_points, keeping
from ..irreps import blocks, random_rotations, to_mul_ir  # noqa: F401  (random_rotations: re-exported)
from .points import choose_points

# Largest relative change that passes. A float32 model's changes are ~1e-7..3e-5 (rounding through its
# layers; the measured values are in check_equivariance's docstring); a model that is not equivariant
# moves by percents. A float64 model's are ~1e-15, far inside it too.
TOLERANCE = 1e-3
# The denominator of a relative change: the original's RMS, but at least this fraction of the RMS of its
# whole point (per structure), so that a block that is small or zero by symmetry (pseudoscalars of a
# near-planar molecule, l=1 on a perfect crystal) is measured against its point: the float32 rounding of
# such a block is ~1e-6 of the point, not of the block.
FLOOR = 0.1
NEAR_ZERO = 1e-3  # a block whose RMS is below this fraction of its point's in every structure is marked near_zero
FORCE_FLOOR = 1e-2  # eV/A: forces below this are noise (a perfect crystal), measured against it
# A structure whose atoms lie within this RMS distance (Angstrom) of one line counts as collinear. Turning
# it about that line moves its atoms by about this much, which changes features by about COLLINEAR / 1 A
# (a bond) relative: 1e-3, the check's TOLERANCE, so such a turn cannot show anything the check would
# call a failure. QM9's linear molecules sit far inside it (HCN 3e-10 A, acetylene 0, cyanogen 4.5e-4 A);
# its near-linear ones outside (formaldehyde's second axis 0.66 A).
COLLINEAR = 1e-3
ONE_ATOM, LINE = "one atom", "collinear"
TABLE_COLUMNS = ["point", "block", "kind", "l", "parity", "mul", "invariant_max_rel", "invariant_median_rel",
                 "rotation_max_rel", "rotation_median_rel", "max_rel", "near_zero", "passed"]


def rotate_each(structures: Structures, R: torch.Tensor) -> Structures:
    """Structure ``i`` rotated by ``R[i]``: positions and cell (its rows are the lattice vectors)
    together, so fractional coordinates and periodic images are unchanged. Labels stay as they were."""
    R = torch.as_tensor(R, dtype=torch.float64)
    if R.shape != (len(structures), 3, 3):
        raise IrrepprobeError(f"need one 3x3 rotation per structure ({len(structures)}), got {list(R.shape)}")
    out = structures.take(np.arange(len(structures)))
    Ra = R[structures.structure_of_atom()]
    out.pos = torch.einsum("aij,aj->ai", Ra, structures.pos.to(torch.float64))
    out.cell = torch.einsum("sij,skj->ski", R, structures.cell.to(torch.float64))
    return out


def geometry(structures: Structures) -> list[str]:
    """Per structure, what a rotation cannot show on it: ``"one atom"`` (a lone atom, not periodic: turning
    it about itself changes nothing a model built on relative positions sees), ``"collinear"`` (every atom
    within :data:`COLLINEAR` of one line, not periodic: turning it about the line changes nothing, so its
    invariants are tested only against the line's new direction; its l>0 features are still compared in
    full against ``D(R)``, which also checks that none points across the line) or ``""`` (a full test; any periodic structure, whose cell breaks the
    symmetry)."""
    n = len(structures)
    owner = structures.structure_of_atom()
    counts = structures.n_atoms.to(torch.float64)
    pos = structures.pos.to(torch.float64)
    centre = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, owner, pos) / counts.clamp(min=1)[:, None]
    x = pos - centre[owner]
    cov = torch.zeros(n, 3, 3, dtype=torch.float64).index_add_(0, owner, x[:, :, None] * x[:, None, :])
    spread = torch.linalg.eigvalsh(cov / counts.clamp(min=1)[:, None, None]).clamp(min=0).sqrt()  # ascending
    off_line = spread[:, :2].pow(2).sum(1).sqrt()  # RMS distance of the atoms from their best line
    periodic = structures.pbc.any(1)
    return [("" if bool(periodic[i]) else ONE_ATOM if int(structures.n_atoms[i]) == 1 else
             LINE if float(off_line[i]) < COLLINEAR else "") for i in range(n)]


class _Snapshot(dict):
    """A store for :func:`keeping` that keeps a detached copy: a later in-place change of the tensor
    during the forward cannot reach what was kept."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value.detach().clone() if torch.is_tensor(value) else value)


def _run(model: Loaded, structures: Structures, points: list[Point], batch_size: int):
    """One pass: per node point the [atoms, dim] mul_ir features, per edge point and block the [n, mul]
    norms summed over each structure's edges; outputs [n, k]; forces [atoms, 3] or None; skipped points."""
    adapter = model.adapter
    n, n_atoms = len(structures), int(structures.ptr[-1])
    parts = {p.name: blocks(p.irreps) for p in points}
    nodes, edges, skipped = {}, {}, {}
    outputs, forces = None, None
    store = _Snapshot()
    for batch, out, f in passes(model, adapter.batches(model, structures, batch_size), adapter.has_forces,
                                keeping(points, store), before=lambda b: store.clear()):
        out = out.detach().double().cpu()
        kept = dict(store)
        rows = batch.rows.cpu()
        atoms = atoms_of(structures.ptr, rows)
        if outputs is None:
            outputs = torch.zeros(n, out.shape[1], dtype=torch.float64)
        outputs[rows] = out.reshape(len(rows), -1)
        if f is not None:
            if forces is None:
                forces = torch.zeros(n_atoms, 3, dtype=torch.float64)
            forces[atoms] = f.detach().double().cpu().reshape(-1, 3)
        for p in points:
            if p.name in skipped:
                continue
            x = kept.get(p.name)
            index = batch.atom_batch if p.kind == "node" else batch.edge_batch
            if x is None:
                skipped[p.name] = "the module did not run"
                continue
            if index is None:
                skipped[p.name] = f"an {p.kind} point, but the adapter gives no {p.kind} index"
                continue
            if x.shape[0] != index.numel():
                skipped[p.name] = f"{x.shape[0]} rows for {index.numel()} {p.kind}s"
                continue
            x = to_mul_ir(x, p.irreps, p.layout).double().cpu()
            if p.kind == "node":
                if p.name not in nodes:
                    nodes[p.name] = torch.zeros(n_atoms, p.irreps.dim, dtype=torch.float64)
                nodes[p.name][atoms] = x
                continue
            where = rows[index.cpu()]
            for b in parts[p.name]:
                norm = x[:, b.index].reshape(-1, b.mul, b.dim).norm(dim=-1)
                acc = edges.setdefault((p.name, b.name), torch.zeros(n, b.mul, dtype=torch.float64))
                acc.index_add_(0, where, norm)
    if outputs is None:
        raise IrrepprobeError("the adapter gave no batch for the equivariance check")
    return nodes, edges, outputs, forces, skipped


def _per_structure_rms(x: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """[n] root mean square of the rows of ``x`` (any trailing shape) owned by each structure."""
    sq = x.reshape(x.shape[0], -1).pow(2)
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, owner, sq.sum(1))
    count = torch.bincount(owner, minlength=n).clamp(min=1) * sq.shape[1]
    return (total / count).sqrt()


def _relative(diff_rms: torch.Tensor, ref_rms: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """[n] relative change per structure: the change over the original, floored."""
    return diff_rms / torch.maximum(ref_rms, floor).clamp(min=1e-300)


def _stats(rel: torch.Tensor) -> tuple[float, float]:
    """(max, median) over structures; a value that is not finite (the model gave NaN or inf) fails."""
    if rel.numel() == 0:
        return math.nan, math.nan
    rel = torch.where(torch.isfinite(rel), rel, torch.full_like(rel, math.inf))
    return float(rel.max()), float(rel.median())


def check_equivariance(model: Loaded, structures: Structures, points=None, n: int = 16, seed: int = 0,
                       batch_size: int = 16, tolerance: float = TOLERANCE) -> tuple[pd.DataFrame, dict]:
    """Rerun ``model`` on the first ``n`` of ``structures``, each rotated by its own random rotation
    (seeded by ``seed``), and measure how far outputs, forces and every block of ``points`` move
    against what equivariance predicts (see the module docstring).

    ``points``: :class:`~irrepprobe.adapters.base.Point` objects, point names or glob patterns (None:
    the adapter's default points). Returns the per-block table (columns :data:`TABLE_COLUMNS`; one row
    per point and block, then a row for the output and one for the forces, ``kind`` ``output`` and
    ``forces``) and a summary: ``structures``, ``seed``, ``tolerance``, ``passed`` (every largest
    relative change below ``tolerance``; None when nothing failed and every structure was a lone atom,
    which tests nothing), ``one_atom`` and ``collinear`` (how many of the structures checked rotation
    cannot test fully, :func:`geometry`; the check takes structures that it can test first),
    ``tested`` (structures other than lone atoms), ``cause`` (on a failure, the likely cause in words,
    :func:`likely_cause`), ``output_max_rel``, ``forces_max_rel`` (None when the
    family gives no forces), ``features_max_rel``, ``worst`` ("point block" of the largest feature
    change), ``failed_blocks`` (["point block", ...] above the tolerance, "output" and "forces"
    included when they fail) and ``skipped`` ({point: why} for points that could not be compared).

    Measured on real float32 models (largest relative change, seed 0; output / forces / features):
    irrepprobe's example checkpoint on 16 QM9 molecules 1.2e-7 / - / 3.0e-6; SevenNet-0 on 4 QM9
    molecules 1.1e-7 / 5.5e-6 / 1.7e-6 and on 4 rattled Si and Cu supercells 1.8e-7 / 1.8e-6 / 4.5e-6;
    the NequIP and Allegro test models on 16 molecules below 1e-6 throughout; e3nn's SimpleNetwork
    3e-5 (pseudoscalars of near-planar molecules, measured against the floor). A layer adding a
    position-dependent scalar: 30% on the output, 100% on the blocks after it."""
    if n < 1:
        raise IrrepprobeError(f"the equivariance check needs at least one structure, got n={n}")
    if len(structures) == 0:
        raise IrrepprobeError("no structures for the equivariance check")

    if points is None or (points and all(isinstance(p, str) for p in points)):
        points = choose_points(model, list(points) if points else None)
    points = as_points(points)
    n = min(int(n), len(structures))
    shapes = geometry(structures)
    rank = {"": 0, LINE: 1, ONE_ATOM: 2}  # full tests first, then what a rotation can partly test
    rows = np.sort(np.argsort([rank[g] for g in shapes], kind="stable")[:n])
    sample = structures.take(rows)
    shapes = [shapes[i] for i in rows]
    R = random_rotations(n, seed)
    rotated = rotate_each(sample, R)

    nodes0, edges0, out0, f0, skipped = _run(model, sample, points, batch_size)
    nodes1, edges1, out1, f1, skipped1 = _run(model, rotated, points, batch_size)
    for k, v in skipped1.items():
        skipped.setdefault(k, v)
    owner = sample.structure_of_atom()
    rows = []

    def add(point, block, kind, l, parity, mul, inv, rot, near):
        inv_max, inv_med = _stats(inv)
        rot_max, rot_med = _stats(rot) if rot is not None else (math.nan, math.nan)
        worst = max((v for v in (inv_max, rot_max) if not math.isnan(v)), default=math.nan)
        rows.append({"point": point, "block": block, "kind": kind, "l": l, "parity": parity, "mul": mul,
                     "invariant_max_rel": inv_max, "invariant_median_rel": inv_med, "rotation_max_rel": rot_max,
                     "rotation_median_rel": rot_med, "max_rel": worst, "near_zero": bool(near),
                     "passed": bool(worst < tolerance) if not math.isnan(worst) else True})

    wigner = {}

    def D(ir: o3.Irrep) -> torch.Tensor:  # [n, 2l+1, 2l+1] per structure
        if ir not in wigner:
            wigner[ir] = ir.D_from_matrix(R).to(torch.float64)
        return wigner[ir]

    for p in points:
        if p.name in skipped:
            continue
        if p.kind == "node":
            x0, x1 = nodes0.get(p.name), nodes1.get(p.name)
            if x0 is None or x1 is None:
                skipped[p.name] = "not captured in both runs"
                continue
            point_rms = _per_structure_rms(x0, owner, n)
            for b in blocks(p.irreps):
                v0 = x0[:, b.index].reshape(-1, b.mul, b.dim)
                v1 = x1[:, b.index].reshape(-1, b.mul, b.dim)
                floor = FLOOR * point_rms
                if b.l == 0:
                    i0, i1 = v0[..., 0], v1[..., 0]
                else:
                    i0, i1 = v0.norm(dim=-1), v1.norm(dim=-1)
                    floor = floor * math.sqrt(b.dim)  # norms of 2l+1 components
                ref = _per_structure_rms(i0, owner, n)
                inv = _relative(_per_structure_rms(i1 - i0, owner, n), ref, floor)
                near = bool((ref < floor * (NEAR_ZERO / FLOOR)).all())
                rot = None
                if b.l > 0:
                    expected = torch.einsum("aij,amj->ami", D(o3.Irrep(b.l, b.parity))[owner], v0)
                    rot = _relative(_per_structure_rms(v1 - expected, owner, n), _per_structure_rms(v0, owner, n),
                                    FLOOR * point_rms)
                add(p.name, b.name, "node", b.l, b.parity, b.mul, inv, rot, near)
        else:
            bl = blocks(p.irreps)
            have = [(b, edges0.get((p.name, b.name)), edges1.get((p.name, b.name))) for b in bl]
            if any(a is None or c is None for _, a, c in have):
                skipped[p.name] = "not captured in both runs"
                continue
            point_rms = torch.cat([a for _, a, _ in have], dim=1).pow(2).mean(1).sqrt()
            everyone = torch.arange(n)
            for b, a, c in have:
                ref = _per_structure_rms(a, everyone, n)
                inv = _relative(_per_structure_rms(c - a, everyone, n), ref, FLOOR * point_rms)
                add(p.name, b.name, "edge", b.l, b.parity, b.mul, inv, None, bool((ref < NEAR_ZERO * point_rms).all()))

    # the output: D(R) of the quantity's irreps (an energy: unchanged)
    q_irreps = _irreps_or_none(model.quantity.irreps)
    if q_irreps is not None and q_irreps.dim == out0.shape[1]:
        expected = torch.einsum("sij,sj->si", q_irreps.D_from_matrix(R).to(torch.float64), out0)
        out_diff = (out1 - expected).norm(dim=1)
    else:  # an output of unknown irreps: its norm at least is invariant
        out_diff = (out1.norm(dim=1) - out0.norm(dim=1)).abs()
    ref = out0.norm(dim=1)
    scale = ref.pow(2).mean().sqrt()
    out_rel = _relative(out_diff, ref, (FLOOR * scale).clamp(min=1e-12).expand(n))
    add("output", model.quantity.name, "output", q_irreps.lmax if q_irreps is not None and len(q_irreps) else 0,
        1, out0.shape[1], out_rel, None, bool((ref < NEAR_ZERO * scale).all()))

    forces_max = None
    if f0 is not None and f1 is not None:
        expected = torch.einsum("aij,aj->ai", R[owner], f0)
        ref = _per_structure_rms(f0, owner, n)
        f_floor = torch.full((n,), FORCE_FLOOR, dtype=torch.float64)
        f_rel = _relative(_per_structure_rms(f1 - expected, owner, n), ref, f_floor)
        add("forces", "forces", "forces", 1, -1, 1, f_rel, None, bool((ref < f_floor).all()))
        forces_max = rows[-1]["max_rel"]

    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    feats = table[table["kind"].isin(["node", "edge"])]
    if len(feats) and feats["max_rel"].notna().any():
        worst_row = feats.loc[feats["max_rel"].idxmax()]
        features_max, worst = float(worst_row["max_rel"]), f"{worst_row['point']} {worst_row['block']}"
    else:
        features_max, worst = 0.0, None
    output_max = float(table.loc[table["kind"] == "output", "max_rel"].max())
    failed = [f"{r.point} {r.block}" if r.kind in ("node", "edge") else r.kind
              for r in table.itertuples() if not r.passed]
    one, line = shapes.count(ONE_ATOM), shapes.count(LINE)
    summary = {"structures": n, "seed": int(seed), "tolerance": float(tolerance),
               "passed": False if failed else None if one == n else True,
               "tested": n - one, "one_atom": one, "collinear": line,
               "output_max_rel": output_max, "forces_max_rel": forces_max, "features_max_rel": features_max,
               "worst": worst, "failed_blocks": failed, "skipped": dict(skipped)}
    summary["cause"] = likely_cause(table, tolerance) if failed else None
    return table, summary


def likely_cause(table: pd.DataFrame, tolerance: float = TOLERANCE) -> str | None:
    """Where a failure of the check most likely comes from, in words, from its per-block ``table``
    (rows in forward order): the first block to fail, whether its invariants change or only its
    direction, and what that points to. None when nothing failed."""
    bad = table[~table["passed"]]
    if not len(bad):
        return None
    feats = table[table["kind"].isin(["node", "edge"])]
    first = bad[bad["kind"].isin(["node", "edge"])]
    if not np.isfinite(bad["max_rel"]).all():
        return "the model gives NaN or inf on a rotated structure (a rotated cell or position it cannot handle)"
    if not len(first):
        if (bad["kind"] == "output").any():
            return ("every captured block passes but the output does not: the readout after the last captured "
                    "point reads orientation, or the output's declared irreps are not what it computes")
        return ("energy and features pass but the forces do not turn with the structure: forces computed in a "
                "fixed frame, or not as the gradient of the energy")
    f = first.iloc[0]
    where = f"{f['point']} {f['block']}"
    at_start = f["point"] == feats["point"].iloc[0]
    inv = f["invariant_max_rel"]
    if not (isinstance(inv, float) and inv >= tolerance) and f["l"] > 0:
        turned = ("the first captured point already, so the adapter's layout or basis of the l>0 components "
                  "(e.g. e3nn's y, z, x order read as x, y, z) is as likely as the model" if at_start else
                  "the module that writes it turns them in a fixed frame; the blocks before it pass")
        return (f"{where} is the first block to fail, with its norms unchanged: its l={int(f['l'])} features turn "
                f"the wrong way under rotation ({turned})")
    if at_start:
        return (f"{where} already changes at the first captured point: the input embedding or first layer reads "
                "orientation (absolute positions, a fixed direction, or a cell that is not rotated with the atoms)")
    return (f"{where} is the first block whose invariants change (every block of the points before it passes): "
            "the module that writes it reads orientation, e.g. absolute positions or a fixed direction")


def _irreps_or_none(irreps) -> o3.Irreps | None:
    try:
        return o3.Irreps(irreps)
    except (ValueError, TypeError, AssertionError):
        return None


def percent(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{100 * x:.3g}%" if x >= 1e-3 else f"{x:.1e}"


def equivariance_line(summary: dict | None) -> str:
    """One line saying how the check went (for logs and the command line)."""
    if summary is None:
        return "equivariance check skipped"
    forces = summary.get("forces_max_rel")
    parts = [f"output {percent(summary['output_max_rel'])}"]
    if forces is not None:
        parts.append(f"forces {percent(forces)}")
    parts.append(f"features {percent(summary['features_max_rel'])}")
    worst = f"worst block: {summary['worst']}, {percent(summary['features_max_rel'])}" if summary.get("worst") \
        else "no block compared"
    first = next((b for b in summary["failed_blocks"] if b not in ("output", "forces")), None)
    if first is not None and first != summary.get("worst"):
        worst = f"first failing block: {first}; " + worst
    shapes = geometry_words(summary)
    if summary["passed"] is None:
        return (f"equivariance check on {summary['structures']} rotated structures tested nothing: every one is a "
                "lone atom, which a rotation about itself leaves unchanged for a model built on relative positions "
                f"(largest relative change {', '.join(parts)}); give structures of two or more atoms not on one line")
    if summary["passed"]:
        return (f"equivariance check passed on {summary['structures']} rotated structures: largest relative "
                f"change {', '.join(parts)} (tolerance {summary['tolerance']:g})" + (f"; {shapes}" if shapes else ""))
    bad = []
    if summary["output_max_rel"] >= summary["tolerance"]:
        bad.append(f"output changes by {percent(summary['output_max_rel'])}")
    if forces is not None and forces >= summary["tolerance"]:
        bad.append(f"forces by {percent(forces)}")
    n_blocks = sum(" " in b for b in summary["failed_blocks"])
    if n_blocks:
        bad.append(f"{n_blocks} feature block{'s' if n_blocks > 1 else ''} by up to "
                   f"{percent(summary['features_max_rel'])}")
    cause = summary.get("cause")
    return (f"equivariance check FAILED on {summary['structures']} rotated structures: {', '.join(bad)} under "
            f"rotation ({worst}; tolerance {summary['tolerance']:g}): the model is not equivariant, so which "
            "irreps it uses is not meaningful" + (f"; likely cause: {cause}" if cause else "")
            + (f"; {shapes}" if shapes else ""))


def geometry_words(summary: dict) -> str:
    """What the structures checked could not test, in words ("" when every one was a full test)."""
    one, line, n = summary.get("one_atom", 0), summary.get("collinear", 0), summary["structures"]
    out = []
    if one:
        out.append(f"{one} of the {n} structures checked {'is a lone atom' if one == 1 else 'are lone atoms'}, "
                   "where rotation "
                   "tests nothing (a model built on relative positions sees the same input)")
    if line:
        out.append(f"{line} of the {n} structures checked {'is' if line == 1 else 'are'} collinear, where a turn "
                   "about the line "
                   "leaves the input as it was: invariants are tested only against the line's new direction; l>0 "
                   "features in full against D(R), which also checks that none points across the line, as "
                   "symmetry demands")
    return "; ".join(out)
