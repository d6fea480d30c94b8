"""Molecular dynamics through each model's calculator: energy drift in NVE, stability at high
temperature, and MD steps per second (interleaved repeats) beside the batch throughput."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd


CELLS = {"Si": ("diamond", 5.43), "Cu": ("fcc", 3.61), "NaCl": ("rocksalt", 5.64), "MgO": ("rocksalt", 4.21),
         "Al": ("fcc", 4.05), "Fe": ("bcc", 2.87), "W": ("bcc", 3.17)}


def supercell(symbol: str, atoms_at_least: int = 64):
    """A cubic crystal of at least ``atoms_at_least`` atoms: Si (diamond), Cu (fcc), NaCl (rock salt)..."""
    from ase.build import bulk

    kind = CELLS[symbol]
    unit = bulk(symbol, kind[0], a=kind[1], cubic=True)
    k = 1
    while len(unit) * k ** 3 < atoms_at_least:
        k += 1
    return unit * (k, k, k)


SYSTEMS = ("Si", "NaCl")


def nve(calc, label: str, symbol: str, ps: float = 2.0, fs: float = 1.0, temperature: float = 300.0,
        every: int = 10, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Velocity Verlet for ``ps`` picoseconds from a ``temperature`` Maxwell-Boltzmann start: the total
    energy per atom every ``every`` steps (trace) and its drift (slope of a line fit, meV/atom/ps) and
    spread (meV/atom) after the first 10% (the start settles)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    from .calculators import fresh

    a = fresh(supercell(symbol), calc)
    MaxwellBoltzmannDistribution(a, temperature_K=2 * temperature, rng=np.random.default_rng(seed))
    Stationary(a)
    dyn = VelocityVerlet(a, fs * units.fs)
    n, trace = len(a), []
    steps = int(round(ps * 1000 / fs))
    t0 = time.perf_counter()

    def log():
        e = a.get_potential_energy() + a.get_kinetic_energy()
        trace.append({"model": label, "system": f"{symbol}, {n} atoms", "time (ps)": dyn.nsteps * fs / 1000,
                      "total energy (eV/atom)": e / n, "temperature (K)": a.get_temperature()})
    dyn.attach(log, interval=every)
    dyn.run(steps)
    tr = pd.DataFrame(trace)
    keep = tr[tr["time (ps)"] >= 0.1 * ps]
    e = keep["total energy (eV/atom)"].to_numpy()
    ok = np.isfinite(e).all() and len(e) > 2
    slope = np.polyfit(keep["time (ps)"], e, 1)[0] if ok else np.nan
    row = {"model": label, "system": f"{symbol}, {n} atoms", "ps": ps, "timestep (fs)": fs,
           "drift (meV/atom/ps)": 1000 * slope, "spread (meV/atom)": 1000 * float(np.std(e)) if ok else np.nan,
           "mean temperature (K)": float(keep["temperature (K)"].mean()), "seconds": time.perf_counter() - t0}
    return tr, row


def stability(calc, label: str, symbol: str, temperature: float = 1200.0, ps: float = 0.5, fs: float = 1.0,
              closest: float = 0.6, max_force: float = 50.0, seed: int = 0) -> dict:
    """Langevin at ``temperature`` for ``ps``: flagged unstable at the first step where two atoms come
    closer than ``closest`` x the sum of their covalent radii or a force exceeds ``max_force`` eV/A."""
    from ase import units
    from ase.data import covalent_radii
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from .calculators import fresh

    a = fresh(supercell(symbol), calc)
    MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = Langevin(a, fs * units.fs, temperature_K=temperature, friction=0.02, rng=np.random.default_rng(seed))
    r = covalent_radii[a.numbers]
    bound = closest * (r[:, None] + r[None, :])
    worst = {"ratio": np.inf, "force": 0.0, "failed_at": None, "why": ""}

    def check():
        d = a.get_all_distances(mic=True)
        np.fill_diagonal(d, np.inf)
        ratio = float((d / (r[:, None] + r[None, :])).min())
        f = float(np.abs(a.get_forces()).max())
        worst["ratio"], worst["force"] = min(worst["ratio"], ratio), max(worst["force"], f)
        if worst["failed_at"] is None and ((d < bound).any() or f > max_force or not np.isfinite(f)):
            worst["failed_at"] = dyn.nsteps * fs / 1000
            worst["why"] = "atoms too close" if (d < bound).any() else "forces exploded"
    dyn.attach(check, interval=5)
    steps = int(round(ps * 1000 / fs))
    done = 0
    while done < steps and worst["failed_at"] is None:
        dyn.run(min(50, steps - done))
        done += min(50, steps - done)
    return {"model": label, "system": f"{symbol}, {len(a)} atoms", "temperature (K)": temperature, "ps": ps,
            "stable": worst["failed_at"] is None, "failed at (ps)": worst["failed_at"], "why": worst["why"],
            "closest / covalent sum": worst["ratio"], "largest force (eV/A)": worst["force"]}


def speed(calcs: dict, sizes=(64, 216, 512), steps: int = 5, repeats: int = 3) -> pd.DataFrame:
    """MD steps per second (velocity Verlet) of each calculator on diamond Si cells of ``sizes`` atoms:
    ``repeats`` rounds, each running every calculator in turn on every size (interleaved: load on the
    machine hits all alike); the first step of each run (neighbour lists, caches) untimed. Median and
    min-max over the rounds."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from .calculators import fresh

    cells = {n: supercell("Si", n) for n in sizes}
    times = {(m, n): [] for m in calcs for n in sizes}
    for r in range(repeats):
        for n, cell in cells.items():
            for m, calc in calcs.items():
                a = fresh(cell, calc)
                MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(r))
                dyn = VelocityVerlet(a, units.fs)
                dyn.run(1)
                t = time.perf_counter()
                dyn.run(steps)
                times[(m, n)].append(steps / (time.perf_counter() - t))
    rows = []
    for (m, n), v in times.items():
        rows.append({"model": m, "atoms": len(cells[n]), "MD steps/s (median)": float(np.median(v)),
                     "min": float(np.min(v)), "max": float(np.max(v)), "repeats": len(v)})
    return pd.DataFrame(rows)


def throughput(models: dict, size: int = 64, batch: int = 8, repeats: int = 3) -> pd.DataFrame:
    """Batch throughput, named as such: structures per second of energy and forces through each model's
    adapter on ``batch`` rattled diamond Si cells of ``size`` atoms at once (interleaved repeats, median)."""
    import torch

    from ..data.structures import from_atoms

    frames = []
    for k in range(batch):
        c = supercell("Si", size)
        c.rattle(0.05, seed=k)
        frames.append(c)
    s = from_atoms(frames)
    times = {m: [] for m in models}
    for _ in range(repeats):
        for name, m in models.items():
            (b,) = list(m.adapter.batches(m, s, batch))
            t = time.perf_counter()
            with torch.enable_grad():
                m.adapter.predict(m, b, forces=m.adapter.has_forces)
            times[name].append(batch / (time.perf_counter() - t))
    return pd.DataFrame([{"model": k, "atoms per structure": len(frames[0]), "batch": batch,
                          "structures/s (median)": float(np.median(v)), "min": float(np.min(v)),
                          "max": float(np.max(v))} for k, v in times.items()])
