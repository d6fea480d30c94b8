"""The validation report: which model wins on what, then each check's table and figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import figures as F
from .document import Document

DRIFT_FLAG = 1.0  # meV/atom/ps: above it the NVE run does not conserve energy


def common_crystals(fits: pd.DataFrame) -> pd.DataFrame:
    """The rows of the crystals that every model fitted, magnetic references left out: the set each model's
    median and mean Delta are taken over, so that they compare."""
    ok = fits[~fits["flag"].str.contains("minimum|magnetic")]
    n = fits["model"].nunique()
    keep = ok.groupby("element")["model"].nunique()
    return ok[ok["element"].isin(keep[keep == n].index)]


def _eos_lines(res: dict) -> list[str]:
    fits = res["eos"]
    ok = common_crystals(fits)
    col = "Delta vs WIEN2k (meV/atom)"
    per = ok.groupby("model", sort=False)[col].agg(["median", "mean", "count"])
    lines = ["**Delta to WIEN2k** (non-magnetic crystals fitted by every model; lower is better): " + "; ".join(
        f"{m} median {r['median']:.2f}, mean {r['mean']:.2f} meV/atom over {int(r['count'])}" for m, r in per.iterrows())
        + "."]
    for _, r in res.get("delta_paired", pd.DataFrame()).iterrows():
        if not np.isfinite(r.get("median A - B (meV/atom)", np.nan)):
            lines.append(f"{r['model A']} against {r['model B']}: too few crystals ({r['crystals']}) for a comparison.")
            continue
        lo, hi, p = r["low"], r["high"], r.get("p (BH)", r["p"])
        call = ("undecided" if lo <= 0 <= hi or p >= 0.05 else
                f"{r['model A']} nearer WIEN2k" if hi < 0 else f"{r['model B']} nearer WIEN2k")
        lines.append(f"{r['model A']} against {r['model B']}: median difference of Delta {r['median A - B (meV/atom)']:+.2f} "
                     f"meV/atom [{lo:+.2f}, {hi:+.2f}] over {r['crystals']} crystals, Wilcoxon p {p:.2g} "
                     f"(Benjamini-Hochberg over {len(res['delta_paired'])} pairs): **{call}**.")
    return lines


def summary_lines(res: dict) -> list[str]:
    """One line per check: the measured numbers and which model does best, or that they cannot be told apart."""
    out = []
    if "eos" in res:
        out += _eos_lines(res)
    if "stress_summary" in res:
        out.append("**Stress** (analytic against finite differences of the energy): " + "; ".join(
            f"{r['model']} {r['verdict']}" + (f" (largest difference {r['max |analytic - finite difference| (GPa)']:.3g} GPa)"
                                              if r["verdict"] != "not computed" else "")
            for _, r in res["stress_summary"].iterrows()) + ".")
    if "nve" in res:
        parts = []
        for _, r in res["nve"].iterrows():
            d = r["drift (meV/atom/ps)"]
            parts.append(f"{r['model']} on {r['system']} {d:+.3g} meV/atom/ps"
                         + (" (**does not conserve energy**)" if not np.isfinite(d) or abs(d) > DRIFT_FLAG else ""))
        r0 = res["nve"].iloc[0]
        out.append(f"**NVE drift** over {r0['ps']:g} ps at {r0['timestep (fs)']:g} fs (flagged above {DRIFT_FLAG:g}): "
                   + "; ".join(parts) + ".")
    if "stability" in res:
        out.append("**Stability** (Langevin, high temperature): " + "; ".join(
            f"{r['model']} " + ("stable" if r["stable"] else f"**unstable** at {r['failed at (ps)']} ps ({r['why']})")
            + f" over {r['ps']:g} ps at {r['temperature (K)']:g} K on {r['system']}" for _, r in res["stability"].iterrows()) + ".")
    if "phonons_summary" in res:
        ph = res["phonons_summary"]
        rms = [c for c in ph if c.startswith("RMS")][0]
        out.append("**Phonons**: " + "; ".join(
            f"{r['crystal']} {r['model']} highest {r['highest (THz)']:.2f} THz, {rms[:-6].lower()} {r[rms]:.2f} THz"
            + (" (**imaginary modes**)" if r["imaginary modes"] else "") for _, r in ph.iterrows()
            if r["model"] != ph["model"].iloc[0]) + ".")
    if "s22" in res:
        mae = res["s22"].assign(a=lambda d: d["error (kcal/mol)"].abs()).groupby("model", sort=False)["a"].mean()
        q = res["qm9"].set_index("model")
        out.append("**Molecules**: S22 interaction energies against CCSD(T), MAE " + "; ".join(
            f"{m} {v:.2f} kcal/mol" for m, v in mae.items()) + "; QM9 U0 after one offset per element "
            + "; ".join(f"{m} {r['after offsets, MAE (kcal/mol)']:.1f} kcal/mol" for m, r in q.iterrows())
            + (" (**the models' energies are on another reference than QM9's**: raw difference "
               + ", ".join(f"{r['raw |model - U0| (eV/atom)']:.3g}" for _, r in q.iterrows()) + " eV/atom; the offsets "
               "are fitted on half the molecules and scored on the other half)" if q["reference mismatch"].any() else "") + ".")
    if "speed" in res:
        sp = res["speed"]
        first = sp["model"].iloc[0]
        base = sp[sp["model"] == first].set_index("atoms")["MD steps/s (median)"]
        out.append("**MD speed** (steps/s through each calculator, median of interleaved repeats; ratio to "
                   f"{first}): " + "; ".join(
                       f"{r['model']} {r['MD steps/s (median)']:.3g} at {r['atoms']} atoms ({r['MD steps/s (median)'] / base[r['atoms']]:.2f}x)"
                       for _, r in sp.iterrows()) + ".")
    return out


def _delta_figure(res: dict, out: Path):
    from ase.data import atomic_numbers

    fits = res["eos"]
    order = sorted(dict.fromkeys(fits["element"]), key=lambda s: atomic_numbers[s])
    fig, ax = plt.subplots(figsize=(11, 4.2))
    pt = F.readable_pt(fig)
    x = {s: k for k, s in enumerate(order)}
    models = list(dict.fromkeys(fits["model"]))
    for k, (m, g) in enumerate(fits.groupby("model", sort=False)):
        off = (k - (len(models) - 1) / 2) * 0.12
        ax.scatter([x[s] + off for s in g["element"]], g["Delta vs WIEN2k (meV/atom)"].clip(lower=1e-2), s=18, label=m)
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), order, fontsize=pt * 0.85, rotation=90)
    ax.set_ylabel("Delta vs WIEN2k (meV/atom)", fontsize=pt)
    ax.tick_params(axis="y", labelsize=pt)
    ax.legend(fontsize=pt, ncol=min(4, len(models)), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return F.save(fig, out / "figures", "delta")


def _nve_figure(res: dict, out: Path):
    tr = res["nve_trace"]
    systems = list(dict.fromkeys(tr["system"]))
    fig, axes = plt.subplots(len(systems), 1, figsize=(8, 3.2 * len(systems)), squeeze=False)
    pt = F.readable_pt(fig)
    for ax, sysname in zip(axes[:, 0], systems):
        for m, g in tr[tr["system"] == sysname].groupby("model", sort=False):
            e = g["total energy (eV/atom)"].to_numpy()
            ax.plot(g["time (ps)"], 1000 * (e - e[0]), label=m)
        ax.set_title(sysname, fontsize=pt)
        ax.set_xlabel("time (ps)", fontsize=pt)
        ax.set_ylabel("total energy - start (meV/atom)", fontsize=pt)
        ax.tick_params(labelsize=pt)
        ax.legend(fontsize=pt)
    return F.save(fig, out / "figures", "nve")


def _phonon_figure(res: dict, out: Path):
    ph = res["phonons"]
    crystals = list(dict.fromkeys(ph["crystal"]))
    fig, axes = plt.subplots(1, len(crystals), figsize=(5.2 * len(crystals), 4), squeeze=False)
    pt = F.readable_pt(fig)
    for ax, c in zip(axes[0], crystals):
        g = ph[ph["crystal"] == c]
        for k, (m, h) in enumerate(g.groupby("model", sort=False)):
            for br, b in h.groupby("branch"):
                ax.plot(b["path position"], b["frequency (THz)"], color=f"C{k}", lw=1.2,
                        ls=["-", "--", ":", "-."][k % 4], label=m if br == 0 else None)
        ticks = [float(v) for v in str(g["ticks"].iloc[0]).split(",")]
        ax.set_xticks(ticks, str(g["labels"].iloc[0]).replace("G", "Γ").split(","), fontsize=pt)
        for t in ticks:
            ax.axvline(t, color="0.8", lw=0.6)
        ax.set_title(c, fontsize=pt)
        ax.set_ylabel("frequency (THz)", fontsize=pt)
        ax.tick_params(axis="y", labelsize=pt)
        ax.legend(fontsize=pt * 0.9)
    return F.save(fig, out / "figures", "phonons")


def validate_report(res: dict, out, command: str | None = None) -> Path:
    out = Path(out)
    models = res["models"]
    doc = Document("irrepprobe validate: " + ", ".join(models["model"]))
    doc.text("Each model through its own family's ASE calculator where it has one: " + "; ".join(
        f"{r['model']} ({r['family']}, {r['calculator']}, {r['parameters']:,} parameters)" for _, r in models.iterrows()) + ".")
    doc.heading("Summary")
    doc.bullets(summary_lines(res))
    if res["skipped"]:
        doc.text("Skipped (listed, not failed): " + "; ".join(res["skipped"]) + ".")
    cfg = res["settings"]
    if "eos" in res:
        doc.heading("Equations of state: the Delta test")
        doc.text("ase.collections.dcdft (WIEN2k PBE, Lejaeghere et al. 2016): energies at 7 volumes within +-6% of "
                 "WIEN2k's V0 (batched through the adapter; one energy per crystal also through the calculator, column "
                 "'calculator - batched'), a third-order Birch-Murnaghan fit, and Delta = the RMS energy difference of "
                 "the two curves aligned at their minima over [0.94, 1.06] V0. Magnetic references (Fe, Co, Ni, Cr, Mn, O) "
                 "and failed fits are flagged and left out of the comparisons.")
        doc.figure(_delta_figure(res, out), "Delta to WIEN2k per crystal and model (log scale)")
        if len(res.get("delta_paired", [])):
            doc.text("Paired over crystals (median of A - B with a 95% percentile bootstrap interval over crystals, "
                     "Wilcoxon signed-rank p and its Benjamini-Hochberg adjustment):")
            doc.table(res["delta_paired"].round(4), "tables/delta_paired.csv")
            doc.text("Delta between the models themselves:")
            doc.table(res["delta_between"].round(3), "tables/delta_between.csv")
        doc.fold("Every crystal")
        doc.table(res["eos"].round(3), "tables/eos.csv")
        doc.unfold()
    if "stress" in res:
        doc.heading("Stress against finite differences")
        doc.text("Rattled, sheared crystals; central differences of the energy at +-0.1% strain per Voigt component; "
                 "consistent when every difference is below max(0.05 GPa, 2% of the largest stress).")
        doc.table(res["stress_summary"].round(5), "tables/stress_summary.csv")
    if "nve" in res:
        doc.heading("NVE energy drift")
        doc.text(f"Velocity Verlet, {cfg['nve_ps']:g} ps at {cfg['nve_fs']:g} fs on cubic cells of 64 atoms, started "
                 "from a Maxwell-Boltzmann distribution at 600 K (it settles near 300 K); drift = slope of a line fitted "
                 "to the total energy per atom after the first 10%.")
        doc.table(res["nve"].round(4), "tables/nve.csv")
        doc.figure(_nve_figure(res, out), "Total energy per atom in NVE, relative to its start")
    if "stability" in res:
        doc.heading("Stability at high temperature")
        doc.text("Langevin at the temperature given; unstable at the first check (every 5 steps) where two atoms are "
                 "closer than 0.6 x the sum of their covalent radii or a force exceeds 50 eV/A.")
        doc.table(res["stability"].round(3), "tables/stability.csv")
    if "phonons" in res:
        doc.heading("Phonons")
        doc.text("ase.phonons, finite displacements of 0.01 A in a 3x3x3 supercell of the primitive cell, acoustic sum "
                 "rule imposed; models compared with each other.")
        doc.table(res["phonons_summary"].round(3), "tables/phonons_summary.csv")
        doc.figure(_phonon_figure(res, out), "Phonon bands along Γ-X-W-K-Γ-L")
    if "s22" in res:
        doc.heading("Molecules")
        doc.text("S22 interaction energies (dimer minus both monomers, through the calculator) against CCSD(T)/CBS; "
                 "QM9 U0 of test molecules, the raw difference (another energy reference shows here) and the error "
                 "after one offset per element fitted on half of them, scored on the other half.")
        doc.table(res["qm9"].round(4), "tables/qm9.csv")
        doc.fold("S22 per dimer")
        doc.table(res["s22"].round(3), "tables/s22.csv")
        doc.unfold()
    if "speed" in res:
        doc.heading("Speed")
        doc.text(f"MD steps per second (velocity Verlet through each calculator) on diamond Si cells; {cfg['speed_repeats']} "
                 f"interleaved rounds of {cfg['speed_steps']} steps after one untimed step; median, min and max. On this "
                 "machine; the ratio, not the absolute number, carries to another.")
        doc.table(res["speed"].round(4), "tables/speed.csv")
        doc.text("Batch throughput (structures per second of energy and forces through the adapter, many structures at "
                 "once: not what MD sees):")
        doc.table(res["throughput"].round(4), "tables/throughput.csv")
    if command:
        doc.heading("How this report was made")
        doc.text(f"Command: `{command}`")
    md, _ = doc.write(out)
    return md
