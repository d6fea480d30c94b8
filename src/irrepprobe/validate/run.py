"""``irrepprobe validate``: the same physics checks on several models side by side, each result kept per
model and check (``out/cache``) so that an interrupted run resumes and an added model costs only itself."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from ..errors import IrrepprobeError
from ..fileio import save_csv, save_text

SUITES = ("eos", "stress", "nve", "stability", "phonons", "molecules", "speed")
DEFAULTS = {"nve_ps": 2.0, "nve_fs": 1.0, "nve_systems": ("Si", "NaCl"), "stability_k": 1200.0, "stability_ps": 0.5,
            "speed_sizes": (64, 216, 512), "speed_steps": 5, "speed_repeats": 3, "qm9": 200}


def parse_suites(text: str | None) -> list[str]:
    if not text:
        return list(SUITES)
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in SUITES]
    if bad or not out:
        raise IrrepprobeError(f"--suite takes checks from {', '.join(SUITES)} (comma-separated); got {text!r}")
    return out


def parse_elements(text: str | None) -> list[str] | None:
    from ase.data import atomic_numbers

    if not text:
        return None
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in atomic_numbers or s == "X"]
    if bad or not out:
        raise IrrepprobeError(f"--elements takes chemical symbols like Si,Cu; not symbols: {', '.join(bad) or text!r}")
    return out


class Cache:
    """One CSV per (check, model, settings): reused only for the same model file and the same settings."""

    def __init__(self, out: Path):
        self.root = out / "cache"

    def path(self, check: str, cand, settings: dict) -> Path:
        key = json.dumps({"model": cand.sha256 or cand.model.source, "head": cand.model.info.get("head"),
                          "calculator": type(cand.calc).__name__, **settings}, sort_keys=True, default=str)
        h = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.root / check / f"{cand.label}-{h}.csv"

    def get(self, check: str, cand, settings: dict, compute, log=print):
        """``compute()`` (a DataFrame, or a dict of them), or what an earlier run kept of it."""
        p = self.path(check, cand, settings)
        done = p.with_suffix(".json")
        if done.exists():
            log(f"{check}, {cand.label}: reusing {p.parent}/{p.stem}")
            parts = json.loads(done.read_text())["parts"]
            got = {k: pd.read_csv(p.with_suffix(f".{k}.csv")).fillna({c: "" for c in TEXT}) for k in parts}
            return got["table"] if parts == ["table"] else got
        res = compute()
        parts = res if isinstance(res, dict) else {"table": res}
        for k, df in parts.items():
            save_csv(df, p.with_suffix(f".{k}.csv"))
        save_text(json.dumps({"parts": list(parts), "settings": settings}, default=str), done)
        return res


TEXT = ("flag", "note", "why")


def validate(specs: list[str], out, fmt: str = "auto", trust: bool = False, suites=None, elements=None,
             device: str = "cpu", settings: dict | None = None, md_models=None, speed_models=None,
             head: str | None = None, log=print) -> dict:
    """Load each model of ``specs`` (``LABEL=PATH``), run ``suites`` through each model's calculator, and
    return the tables (also written under ``out``). ``elements``: chemical symbols the crystal checks are
    restricted to. Elements a model does not know are listed and skipped, never a failure. ``md_models``,
    ``speed_models``: labels of the models NVE and stability, or the speed, are run for (None: all): the
    costly checks, where models of one architecture need one run. ``head``: the MACE head or SevenNet
    fidelity every model is run at."""
    from ase.data import atomic_numbers, chemical_symbols

    from . import dynamics, eos, molecules, phonons, stress
    from .calculators import candidate, known_elements, parse_spec

    suites = list(suites or SUITES)
    cfg = {**DEFAULTS, **(settings or {})}
    labels = [parse_spec(s)[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise IrrepprobeError(f"two models have the same label ({', '.join(labels)}); name them LABEL=PATH")
    out = Path(out)
    cands = []
    for spec in specs:
        c = candidate(spec, fmt, trust=trust, device=device, head=head)
        log(f"{c.label}: {c.model.adapter.summary(c.model)}; calculator {type(c.calc).__name__}"
            + ("" if c.own_calculator else " (irrepprobe's, through the adapter: no stress)"))
        cands.append(c)
    for flag, chosen in (("--md-models", md_models), ("--speed-models", speed_models)):
        unknown = sorted(set(chosen or []) - set(labels))
        if unknown:
            raise IrrepprobeError(f"{flag}: no model labelled {', '.join(unknown)} (labels: {', '.join(labels)})")
    cache = Cache(out)
    common = known_elements(cands)
    res: dict = {"models": pd.DataFrame([{"model": c.label, "source": str(c.model.info.get("path") or c.model.source),
                                          "family": c.model.adapter.name, "calculator": type(c.calc).__name__,
                                          "elements": "all" if c.elements is None else len(c.elements),
                                          "parameters": sum(p.numel() for p in c.model.module.parameters())}
                                         for c in cands]),
                 "skipped": [], "settings": cfg, "suites": suites}

    def lacks(c, numbers) -> str:
        return " ".join(chemical_symbols[z] for z in sorted(set(numbers) - set(c.elements or numbers)))

    if "eos" in suites:
        if elements:
            from ase.collections import dcdft
            missing = [s for s in elements if s not in dcdft.names]
            if missing:
                res["skipped"].append(f"eos: no dcdft crystal of {', '.join(missing)} (dcdft has the 71 elemental "
                                      "crystals H-Rn without the lanthanides)")
        names = eos.symbols(None, elements)
        usable = [s for s in names if common is None or atomic_numbers[s] in common]
        for c in cands:
            gone = [s for s in names if c.elements is not None and atomic_numbers[s] not in c.elements]
            if gone:
                res["skipped"].append(f"eos: {c.label} does not know {' '.join(gone)}: skipped for every model")
        pts, fits = [], []
        for c in cands:
            log(f"eos: {c.label} on {len(usable)} crystals")
            p = cache.get("eos", c, {"names": usable, "v": 1},
                          lambda c=c: dict(zip(("points", "fits"), eos.run(c, usable))), log)
            pts.append(p["points"])
            fits.append(p["fits"])
        if usable:
            res["eos_points"] = pd.concat(pts, ignore_index=True)
            res["eos"] = pd.concat(fits, ignore_index=True)
            res["delta_between"] = eos.between(res["eos"])
            res["delta_paired"] = eos.paired(res["eos"])

    if "stress" in suites:
        systems = stress.cells(None)
        tables = []
        for c in cands:
            mine = {k: v for k, v in systems.items() if c.knows(v.numbers)}
            for k, v in systems.items():
                if k not in mine:
                    res["skipped"].append(f"stress: {c.label} does not know {lacks(c, v.numbers)} ({k})")
            if mine:
                tables.append(cache.get("stress", c, {"systems": sorted(mine), "v": 1},
                                        lambda: stress.run(c.calc, c.label, mine), log))
        if tables:
            res["stress"] = pd.concat(tables, ignore_index=True).fillna({"note": ""})
            res["stress_summary"] = stress.summary(res["stress"])

    if "nve" in suites or "stability" in suites:
        traces, rows, stab = [], [], []
        for sym in cfg["nve_systems"]:
            cell = dynamics.supercell(sym)
            for c in cands:
                if md_models is not None and c.label not in md_models:
                    continue
                if not c.knows(cell.numbers):
                    res["skipped"].append(f"nve/stability: {c.label} does not know {lacks(c, cell.numbers)} ({sym})")
                    continue
                if "nve" in suites:
                    s = {"system": sym, "ps": cfg["nve_ps"], "fs": cfg["nve_fs"], "v": 1}

                    def go(c=c, sym=sym):
                        tr, row = dynamics.nve(c.calc, c.label, sym, cfg["nve_ps"], cfg["nve_fs"])
                        log(f"nve: {c.label} {sym}: drift {row['drift (meV/atom/ps)']:.3g} meV/atom/ps in "
                            f"{row['seconds']:.0f} s")
                        return {"trace": tr, "row": pd.DataFrame([row])}
                    d = cache.get("nve", c, s, go, log)
                    traces.append(d["trace"])
                    rows.append(d["row"])
                if "stability" in suites and sym == cfg["nve_systems"][0]:
                    s = {"system": sym, "K": cfg["stability_k"], "ps": cfg["stability_ps"], "fs": cfg["nve_fs"], "v": 1}
                    stab.append(cache.get("stability", c, s, lambda c=c, sym=sym: pd.DataFrame(
                        [dynamics.stability(c.calc, c.label, sym, cfg["stability_k"], cfg["stability_ps"], cfg["nve_fs"])]), log))
        if traces:
            res["nve_trace"] = pd.concat(traces, ignore_index=True)
            res["nve"] = pd.concat(rows, ignore_index=True)
        if stab:
            res["stability"] = pd.concat(stab, ignore_index=True).fillna({"why": ""})

    if "phonons" in suites:
        tables = []
        for sym in phonons.CRYSTALS:
            z = atomic_numbers[sym]
            if elements and sym not in elements:
                continue
            for c in cands:
                if not c.knows([z]):
                    res["skipped"].append(f"phonons: {c.label} does not know {sym}")
                    continue
                tables.append(cache.get("phonons", c, {"crystal": sym, "v": 1},
                                        lambda c=c, sym=sym: phonons.run(c.calc, c.label, sym), log))
        if tables:
            res["phonons"] = pd.concat(tables, ignore_index=True)
            res["phonons_summary"] = phonons.compare(res["phonons"])

    if "molecules" in suites:
        s22, q = [], []
        for c in cands:
            known = None if c.elements is None else set(c.elements)
            if known is not None and not {1, 6, 7, 8} <= known:
                res["skipped"].append(f"molecules: {c.label} does not know H, C, N and O")
                continue
            s22.append(cache.get("s22", c, {"v": 1}, lambda c=c, known=known: molecules.s22(c.calc, c.label, known), log))
            q.append(cache.get("qm9", c, {"n": cfg["qm9"], "v": 1},
                               lambda c=c, known=known: pd.DataFrame([molecules.qm9(c, cfg["qm9"], known)]),
                               log))
        if s22:
            res["s22"] = pd.concat(s22, ignore_index=True)
            res["qm9"] = pd.concat(q, ignore_index=True)

    if "speed" in suites:
        # never cached: speed is measured together, interleaved, in one run
        timed = [c for c in cands if speed_models is None or c.label in speed_models]
        usable = [c for c in timed if c.knows([14])]
        for c in timed:
            if c not in usable:
                res["skipped"].append(f"speed: {c.label} does not know Si")
        if usable:
            log(f"speed: {', '.join(c.label for c in usable)} on {', '.join(map(str, cfg['speed_sizes']))} atoms")
            res["speed"] = dynamics.speed({c.label: c.calc for c in usable}, cfg["speed_sizes"], cfg["speed_steps"],
                                          cfg["speed_repeats"])
            res["throughput"] = dynamics.throughput({c.label: c.model for c in usable})
    for name, df in res.items():
        if isinstance(df, pd.DataFrame):
            save_csv(df, out / "tables" / f"{name}.csv")
    save_text("\n".join(res["skipped"]) + "\n", out / "tables" / "skipped.txt")
    return res
