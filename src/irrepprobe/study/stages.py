"""The costly stages of a capture report, each reused from its output directory when an earlier report
there measured the same thing: the untrained control captures, utilisation (this model's and other
seeds'), and the latent maps."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as M
from ..capture import Capture, capture_untrained, load_capture, model_of, structures_of
from ..errors import IrrepprobeError
from ..fileio import save_csv, save_json
from ..runtime import resolve_device

# gradient x activation (a first-order diagnostic beside the ablations) on the first so many structures
ATTRIBUTION_MOLECULES = 128


def control_captures(cap: Capture, out: Path, model, device, log, trust=None, n: int = 5) -> list[Capture]:
    """Captures of ``n`` untrained initialisations over the same structures, at the points the probes
    read (the hidden ones): the run's own (the weights training began from, ``control/capture``) and
    seeds 1..n-1 (``control/seed{k}``), each reused when already in ``out``; empty when the model's
    family has no untrained control. The trained model is loaded and the batches built once for all."""
    points = M.hidden_points(cap)
    ctls, shared = [], None
    for k in range(n):
        path = out / "control" / ("capture" if k == 0 else f"seed{k}")
        if (path / "meta.json").exists():
            ctl = load_capture(path)
            same = (np.array_equal(ctl.arrays["index"], cap.arrays["index"]) and set(ctl.points) == set(points)
                    and ctl.meta.get("model_sha256") == cap.meta.get("model_sha256")
                    and ctl.meta.get("adapter") == cap.meta.get("adapter")
                    and ctl.meta.get("head") == cap.meta.get("head"))
            if same:
                log(f"reusing the untrained control capture in {path}")
                ctls.append(ctl)
                continue
        if shared is None:
            trained = model_of(cap, model, trust=trust, device=resolve_device(device))
            structures = structures_of(cap)
            batch_size = int(cap.meta.get("batch_size") or 64)
            shared = {"trained": trained, "structures": structures,
                      "batches": list(trained.adapter.batches(trained, structures, batch_size))}
        ctl = capture_untrained(cap, path, seed=None if k == 0 else k, points=points, **shared)
        if ctl is None:
            return []
        ctls.append(ctl)
    return ctls


def cached_utilisation(cap: Capture, out: Path, model, molecules, device, trust, threshold, seed, log, quantity,
                       first_look) -> pd.DataFrame:
    """Utilisation under every intervention, reused from ``out`` when an earlier report there measured
    the same model on the same structures with the same settings (``tables/utilisation.json`` says so):
    it is the costly stage, and a report rerun for its other parts should not redo it."""
    key = {"model_sha256": cap.meta.get("model_sha256"), "data_sha256": cap.meta.get("data_sha256"),
           "index_sha256": hashlib.sha256(np.ascontiguousarray(cap.arrays["index"]).tobytes()).hexdigest(),
           "points": M.hidden_points(cap), "molecules": molecules, "interventions": list(M.INTERVENTIONS),
           "seed": seed, "head": cap.meta.get("head"), "quantity": quantity, "first_look": first_look,
           "threshold": threshold, "table_version": 5}  # 5: the edits each row rests on
    table, meta = out / "tables" / "utilisation.csv", out / "tables" / "utilisation.json"
    if table.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        log(f"reusing the utilisation measured for this model and data in {table}")
        util = pd.read_csv(table)
        util["parity"] = util["parity"].fillna("")
        util["used"] = M.verdicts(util, threshold)
        return util
    util = M.utilisation(cap, model, molecules=molecules, device=device, trust=trust,
                         interventions=M.INTERVENTIONS, threshold=threshold, seed=seed, quantity=quantity,
                         first_look=first_look, attribution_molecules=ATTRIBUTION_MOLECULES)
    meta.unlink(missing_ok=True)  # the key goes last: a table without it is never reused
    save_csv(util, table)
    save_json(key, meta)
    return util


def seed_utilisation(cap, util, seeds, out, molecules, device, trust, threshold, seed, log, quantity, first_look):
    """:func:`irrepprobe.metrics.across_seeds` over this model and the captures ``seeds`` (each one's
    utilisation measured on the same structures, kept in ``out/seeds/seedK``)."""
    tables, names = [util], ["this model"]
    n = int(util["molecules"].iloc[0]) if "molecules" in util else None
    for k, path in enumerate(seeds, 1):
        other = load_capture(path)
        if not np.array_equal(other.arrays["index"][:n], cap.arrays["index"][:n]):
            raise IrrepprobeError(f"--seeds: {path} is not over the same structures as {cap.path}")
        if set(M.hidden_points(other)) != set(M.hidden_points(cap)):
            raise IrrepprobeError(f"--seeds: {path} has other points than {cap.path}: not the same architecture")
        tables.append(cached_utilisation(other, out / "seeds" / f"seed{k}", None, molecules, device, trust, threshold,
                                         seed, log, quantity, first_look))
        names.append(Path(path).name if Path(path).name not in names else f"{Path(path).name} ({k})")
    return M.across_seeds(tables, names)


def block_maps(cap, inv, points, n_points, method, seed):
    """2-D maps (``method``) of every block's pooled invariants at ``points`` over a subsample of at most
    ``n_points`` structures, coloured by the own quantity and the squared error (or size); and the rows."""
    idx = M.subsample(len(cap.outputs), n_points, seed)
    tcol = inv.columns[0]
    _, _, unit = M.own_quantity(cap)
    second = (("error", np.log10(inv["squared error"].to_numpy()[idx] + 1e-12), f"log10 squared error ({unit}^2)",
               "magma") if "squared error" in inv else
              ("size", cap.arrays["n_atoms"][idx].astype(float), "atoms per structure", "magma"))
    maps = []
    for p in points:
        for b in cap.blocks(p):
            xy = M.latent_map(M.invariants(cap, p, b)[idx], method, seed)
            maps.append({"point": p, "block": b, "xy": xy, "colours": [
                ("target", inv[tcol].to_numpy()[idx], f"{tcol} beyond composition ({unit})", "viridis"), second]})
    return maps, idx
