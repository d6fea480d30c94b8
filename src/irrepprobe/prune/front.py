"""The speed/accuracy front of a potential: several cuts (orders and channel fractions), each pruned,
fine-tuned with seeds (:func:`~irrepprobe.prune.family.prune_family`), measured for MD speed through the
family's own calculator (all files interleaved in one run) and for error on the held-out structures; the
original and, where given, the family's official smaller model beside them; the Pareto set marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from e3nn import o3

from ..adapters import Loaded
from ..adapters.base import parameters
from ..errors import IrrepprobeError
from ..fileio import save_csv
from ..metrics.finetune import outputs
from ..metrics.seeds import t_interval

DEFAULT = "0.75 0.5 0.35 drop:1.0 drop:0.5"
CONTROL = "control-original-fine-tuned"


def parse_front(text: str | None, model: Loaded, equal: bool = False) -> list[tuple[str, list[int], dict | None]]:
    """``--front`` SETTINGS (whitespace-separated; default :data:`DEFAULT`) as ``(name, drop, counts)``
    (``equal``: one count per layer, as :func:`~irrepprobe.prune.model.prune_model` resolves it):
    each item a ``--channels`` SPEC, or ``drop:SPEC`` (the highest order dropped as well; ``drop:1.0``:
    that order only); ``1.0`` alone is the control: the original fine-tuned with the same budget. Refused in
    one line before any work."""
    from .channels import parse_channels

    groups = model.adapter.channel_groups(model)
    top = [max((ir.l for _, _, irr in groups for _, ir in o3.Irreps(irr)), default=0)]
    muls = {(g, str(ir)): m for g, _, irr in groups for m, ir in o3.Irreps(irr)}
    out = []
    for item in (text or DEFAULT).split():
        drop, spec = ([], item) if not item.startswith("drop:") else (top, item[len("drop:"):])
        why = model.adapter.why_not_without(model, drop) if drop else None
        if why:
            raise IrrepprobeError(f"--front {item}: cannot drop l={top[0]}: {why}")
        counts = parse_channels(spec, groups, drop, equal)
        if counts == "auto":
            raise IrrepprobeError("--front takes fractions or counts of channels; auto goes with --channels")
        full = all(k == muls[key] for key, k in counts.items())
        if not drop and full:  # the original fine-tuned with the same budget: the control of every cut
            out.append((CONTROL, [], counts))
            continue
        name = ("drop-l" + str(top[0]) + "-" if drop else "") + "channels-" + spec.replace(":", "").replace(",", "_")
        out.append((name, drop, None if full else counts))
    return out


def pareto(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points no other point beats on both speed ``x`` (higher is better) and error ``y`` (lower)."""
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        keep[i] = not np.any((x >= x[i]) & (y <= y[i]) & ((x > x[i]) | (y < y[i])))
    return keep


def front(model: Loaded, structures, cuts, out, held=None, reference: Loaded | None = None, seeds: int = 2,
          md_steps: int = 20, prune_kwargs: dict | None = None, log=print) -> dict:
    """Each cut of ``cuts`` (:func:`parse_front`) pruned into ``out/NAME`` with ``seeds`` fine-tuning seeds;
    then one interleaved MD-speed run of the original, every cut's first seed and ``reference``, and the
    table ``front.csv``: error against the truth (labels where fine-tuning had them, else the original's
    own predictions) with a t interval over seeds, MD steps/s, and the Pareto set."""
    from .family import md_speed, md_systems, prune_family

    out = Path(out)
    kw = dict(prune_kwargs or {})
    results = {}
    for name, drop, counts in cuts:
        log(f"front: {name}")
        results[name] = prune_family(model, structures, drop, out / name, seeds=seeds, held=held, md_steps=0,
                                     scratch=False, channels=counts, timed=False, log=log, **kw)
    first = next(iter(results.values()))
    adapter = model.adapter
    truth_col = "labels" if "energy MAE vs labels" in first["table"] else "original"
    rows = []
    orig = first["table"].iloc[0]
    rows.append({"model": "original", "cut": "none", "seeds": 1, "parameters": int(orig["parameters"]),
                 **_errors_row(first["table"].iloc[[0]], truth_col)})
    for name, res in results.items():
        t = res["table"]
        tuned = t[t["model"] == "pruned, fine-tuned"]
        cut = "none: the original fine-tuned with the same budget" if name == CONTROL else res["cut"]
        rows.append({"model": name, "cut": cut, "seeds": len(tuned), "parameters": int(tuned["parameters"].iloc[0]),
                     **_errors_row(tuned, truth_col)})
    files = {"original": model.info.get("path") or model.source}
    files.update({name: res["files"][0] for name, res in results.items()})
    if reference is not None:
        held_b = list(adapter.batches(model, first["held"], 16))
        pred = outputs(reference, held_b, adapter.has_forces)
        truth = first["truth"]
        from .family import _errors

        n_atoms = first["held"].n_atoms.numpy().astype(np.float64)
        e, f = _errors(pred, truth, n_atoms, model.quantity.per_atom)
        rows.append({"model": "official " + Path(reference.info.get("pretrained") or reference.source).stem, "cut": "official",
                     "seeds": 1, "parameters": parameters(reference.module),
                     "energy MAE": e, "forces MAE": f})
        files[rows[-1]["model"]] = reference.info.get("path") or reference.source
    table = pd.DataFrame(rows)
    md = None
    if md_steps and hasattr(adapter, "calculator"):
        calcs = {k: adapter.calculator(str(v), model) for k, v in files.items()}
        md = md_speed(calcs, md_systems(first["held"], model.info.get("elements")), md_steps)
        save_csv(md, out / "md_speed.csv")
        big = md["system"].iloc[0]
        speed = md[md["system"] == big].set_index("model")["MD steps/s"]
        table["MD steps/s"] = table["model"].map(speed)
        table["speed-up"] = table["MD steps/s"] / float(speed["original"])
        err = table["forces MAE"].fillna(table["energy MAE"]).to_numpy()
        table["pareto"] = pareto(table["MD steps/s"].to_numpy(), err)
    elif md_steps:
        log(f"no MD speed: the {adapter.name} adapter has no ASE calculator")
    save_csv(table, out / "front.csv")
    return {"table": table, "md": md, "results": results, "truth": truth_col, "out": out,
            "files": files}


def _errors_row(rows: pd.DataFrame, truth: str) -> dict:
    out = {}
    for q in ("energy", "forces"):
        col = f"{q} MAE vs {truth}"
        if col not in rows:
            raise IrrepprobeError(f"no {col} in the comparison table")
        out[f"{q} MAE"], out[f"{q} MAE low"], out[f"{q} MAE high"] = t_interval(rows[col])
    return out
