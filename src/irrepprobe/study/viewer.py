"""The report's structures, predictions, maps and per-order norms as a chemiscope input
(``chemiscope.json.gz``), the field's interactive structure-property viewer: open it at
https://chemiscope.org, in Jupyter with ``chemiscope.show_input(path)``, or offline in any browser as
``explore.html`` beside it (:mod:`irrepprobe.study.explore`).

Per structure: the labels, the model's prediction and error, each mapped block's 2-D coordinates, the
root-mean-square norm of each order at each point (from the capture), and, when the model can be run,
the shift of the prediction when each order l > 0 is zeroed everywhere (the masked model of the recovery
leg, as the checkpoint stands). Per atom, when the model can be run: each order's norm at the last hidden
point. Arrows: a chosen point's pooled l = 1 vector (its channel of largest mean norm), at the
structure's centre of mass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..metrics.features import block_info
from ..capture import blocks, hooked, keeping, model_of, split, structures_of, to_mul_ir
from ..capture.store import Capture
from ..data.targets import vector_basis
from ..metrics.masking import mask_hooks
from ..adapters import predict_all
from ..runtime import grad_context
from . import explore

FILE = "chemiscope.json.gz"


def _norm_by_order(cap: Capture, point: str, rows) -> dict[int, np.ndarray]:
    """Per order: the root-mean-square over the order's channels of the pooled mean norm [rows]."""
    by: dict[int, list[np.ndarray]] = {}
    for b in cap.blocks(point):
        l = block_info(cap, point, b)["l"]
        by.setdefault(l, []).append(cap.pooled(point, b, "norm_mean")[rows])
    return {l: np.sqrt(np.mean(np.concatenate(v, axis=1) ** 2, axis=1)) for l, v in by.items()}


def _arrows(cap: Capture, point: str, rows) -> np.ndarray | None:
    """[rows, 3] Cartesian pooled vector of the point's first l = 1 block, channel of largest mean norm."""
    for b in cap.blocks(point):
        if block_info(cap, point, b)["l"] == 1:
            V = cap.pooled(point, b, "vector_sum")[rows]  # e3nn's basis
            c = int(np.argmax(cap.pooled(point, b, "norm_mean").mean(axis=0)))
            v = V[:, c, :].astype(np.float64) @ np.linalg.inv(vector_basis().numpy()).T
            scale = np.median(np.linalg.norm(v, axis=1))
            return v / scale if scale > 0 else v
    return None


def _from_model(cap: Capture, structures, model, trust, log) -> dict[str, np.ndarray]:
    """Per-structure shifts when each order is zeroed everywhere, and per-atom norms by order at the last
    hidden point (keys starting with ``atom:``); empty when the model cannot be loaded."""
    from ..errors import IrrepprobeError

    try:
        loaded = model_of(cap, model, trust=trust)
    except IrrepprobeError as e:
        log(f"  chemiscope: no per-atom norms or ablation shifts ({e})")
        return {}
    batches = list(loaded.adapter.batches(loaded, structures, 32))
    hidden = M.hidden_points(cap)
    nodes = [p for p in loaded.adapter.points(loaded) if p.name in hidden and p.kind == "node"]
    point = max(nodes, key=lambda p: hidden.index(p.name)) if nodes else None  # none: Allegro's per-edge tracks
    base, norms = [], {}
    for batch in batches:  # the unmasked pass: predictions, and the per-atom norms at ``point``
        store: dict[str, torch.Tensor] = {}
        with hooked(loaded.module, keeping([point], store) if point else ()), grad_context(loaded.adapter.needs_grad):
            base.append(loaded.adapter.predict(loaded, batch).detach().double().cpu())
        if point is None:
            continue
        x = to_mul_ir(store[point.name], point.irreps, point.layout).detach()
        by: dict[int, list[torch.Tensor]] = {}
        for b, v in zip(blocks(point.irreps), split(x, point.irreps).values()):
            by.setdefault(b.l, []).append(v.norm(dim=-1))  # [atoms, mul]
        for l, v in by.items():
            norms.setdefault(l, []).append(torch.cat(v, dim=1).pow(2).mean(dim=1).sqrt())
    base = torch.cat(base)
    out = {}
    name, unit = cap.meta["quantity"]["name"], cap.meta["quantity"]["unit"]
    per_atom = cap.meta["quantity"].get("per_atom")
    n_atoms = structures.n_atoms.double().numpy()[:, None]
    orders = sorted({b.l for p in loaded.adapter.mask_points(loaded) for b in blocks(p.irreps) if b.l > 0})
    for l in orders:
        shifted = predict_all(loaded, batches, hooks=mask_hooks(loaded, [l]))[0]
        d = (shifted - base).numpy()
        d = d / n_atoms if per_atom else d
        out[f"shift of {name} with l={l} zeroed ({unit}{'/atom' if per_atom else ''})"] = np.linalg.norm(d, axis=1)
    for l, v in norms.items():
        out[f"atom:norm l={l} at {point.name} (per atom)"] = torch.cat(v).double().cpu().numpy()
    return out


def colour_by(props: dict, q: dict) -> dict:
    """The map's colour (and size) settings: the absolute error where there is one, on a square-root scale
    (errors are skewed: on a linear one a few large errors leave every other point the palette's first
    colour) and in point size too, so the largest errors stand out on chemiscope's white background, where
    the palette's pale end alone would not; else the prediction."""
    if "absolute error" not in props:
        return {"color": {"property": f"prediction: {q['name']}", "palette": "viridis"}}
    return {"color": {"property": "absolute error", "palette": "plasma", "mode": "sqrt"},
            "size": {"property": "absolute error", "mode": "sqrt", "factor": 60}}


def best_map(maps, knn: pd.DataFrame, own: str) -> str | None:
    """The mapped block whose invariants predict the own quantity best (kNN R2): the viewer opens on it."""
    mapped = {(m["point"], m["block"]) for m in maps}
    rows = knn[(knn["target"] == own) & np.array([(p, b) in mapped for p, b in zip(knn["point"], knn["block"])])]
    if not len(rows):
        return f"{maps[0]['point']} {maps[0]['block']}" if maps else None
    r = rows.loc[rows["knn_r2"].idxmax()]
    return f"{r['point']} {r['block']}"


def vector_point(table: pd.DataFrame) -> str | None:
    """The last point with an l = 1 block that something downstream reads (used or unused, not unreachable
    or degenerate): its pooled vectors are drawn as arrows."""
    ok = table[(table["l"] == 1) & table["verdict"].isin(["used", "unused"])]
    return ok["point"].iloc[-1] if len(ok) else None


def export(cap: Capture, out: Path, maps: list[dict], rows: np.ndarray, best: str | None = None,
           vectors: str | None = None, model=None, trust: bool | None = None, log=print) -> Path:
    """Write ``out/chemiscope.json.gz`` for the structures ``rows`` of the capture (those of the latent
    maps, whose coordinates ``maps`` holds); ``best``: the mapped block ("point block") the viewer opens on;
    ``vectors``: the point whose pooled l = 1 vector is drawn as an arrow (none without it)."""
    import chemiscope

    structures = structures_of(cap).take(rows)
    frames = [structures.atoms(i) for i in range(len(structures))]
    for f in frames:  # chemiscope reads info/arrays itself where asked; we pass properties explicitly
        f.info.clear()
        for k in [k for k in f.arrays if k not in ("numbers", "positions")]:
            del f.arrays[k]
    props: dict[str, dict] = {}

    def put(name, values, target="structure", units=None, description=None):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1 and np.isfinite(values).any():
            props[name] = {"target": target, "values": values.tolist(), **({"units": units} if units else {}),
                           **({"description": description} if description else {})}

    q = cap.meta["quantity"]
    put("atoms", cap.arrays["n_atoms"][rows], description="atoms per structure")
    for key in [k for k in cap.arrays if k.startswith("label/")]:
        put(key[6:], cap.arrays[key][rows], units=(cap.meta.get("labels", {}).get(key[6:], {}) or {}).get("unit"))
    out_ = cap.outputs[rows]
    for k in range(out_.shape[1]):
        put(f"prediction: {q['name']}" + (f"[{k}]" if out_.shape[1] > 1 else ""), out_[:, k], units=q["unit"])
    if "error" in cap.arrays:
        err = cap.errors[rows]
        put("absolute error", np.linalg.norm(err.reshape(len(err), -1), axis=1), units=q["unit"],
            description=f"|prediction - {cap.meta.get('target')}|")
    for m in maps:
        for k in range(2):
            put(f"map {m['point']} {m['block']} [{k + 1}]", m["xy"][:, k])
    for p in M.hidden_points(cap):
        for l, v in _norm_by_order(cap, p, rows).items():
            put(f"norm l={l} at {p}", v, description="root mean square over the order's channels of the "
                                                     "per-atom norm, averaged over the structure's atoms")
    atom_props = {}
    for k, v in _from_model(cap, structures, model, trust, log).items():
        if k.startswith("atom:"):
            atom_props[k[5:]] = v
        else:
            put(k, v)
    for k, v in atom_props.items():
        put(k, v, target="atom")
    environments = chemiscope.all_atomic_environments(frames) if atom_props else None
    shapes, settings = {}, {}
    arrows = _arrows(cap, vectors, rows) if vectors else None
    if arrows is not None:
        centres = [f.get_center_of_mass() if len(f) else np.zeros(3) for f in frames]
        shapes["l=1 vector"] = {"kind": "arrow", "parameters": {
            "global": {"baseRadius": 0.1, "headRadius": 0.2, "headLength": 0.3},
            "structure": [{"vector": list(map(float, a)), "position": list(map(float, c))}
                          for a, c in zip(arrows, centres)]}}
    if best is not None:
        settings = {"target": "structure", "map": {"x": {"property": f"map {best} [1]"},
                                                   "y": {"property": f"map {best} [2]"}, **colour_by(props, q)},
                    "structure": [{"shape": ["l=1 vector"]}] if shapes else [{}]}
    meta = {"name": f"irrepprobe: {Path(cap.meta['model']).name} on {cap.meta['data']}",
            "description": f"{len(frames)} structures of the capture {cap.path}; maps of pooled block invariants "
                           "as in report.md",
            "references": ["irrepprobe report"]}
    data = chemiscope.create_input(structures=frames, metadata=meta, properties=props, environments=environments,
                                   shapes=shapes or None, settings=settings or None)
    explore.write(data, out, meta["name"])  # the offline viewer beside the file
    return explore.write_input(data, Path(out) / FILE)
