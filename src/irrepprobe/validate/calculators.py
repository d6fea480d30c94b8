"""The models under validation, each as an ASE calculator: the family's own (SevenNetCalculator,
MACECalculator) where the adapter names one, else :class:`AdapterCalculator` (energy and forces through
the adapter, no stress: the stress check is then "not computed")."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from ase.calculators.calculator import Calculator, all_changes

from ..adapters import Loaded
from ..errors import IrrepprobeError


class AdapterCalculator(Calculator):
    """Energy and forces of any loaded model through its adapter: one structure per call."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model: Loaded, **kw):
        super().__init__(**kw)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ..data.structures import from_atoms

        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = None
        m = self.model
        s = from_atoms([a])
        (b,) = list(m.adapter.batches(m, s, 1))
        want = m.adapter.has_forces
        with torch.enable_grad() if want or m.adapter.needs_grad else torch.no_grad():
            e = m.adapter.predict(m, b, forces=want)
        self.results["energy"] = float(e.reshape(-1)[0])
        self.results["free_energy"] = self.results["energy"]
        if want:
            self.results["forces"] = m.adapter.forces(m, b).detach().double().cpu().numpy()


@dataclass
class Candidate:
    """One model under validation: its label, the loaded model and its calculator."""

    label: str
    model: Loaded
    calc: Calculator
    own_calculator: bool  # the family's own ASE calculator, not ours
    elements: list[int] | None = field(default=None)  # None: not declared by the model

    @property
    def has_stress(self) -> bool:
        return "stress" in getattr(self.calc, "implemented_properties", [])

    def knows(self, numbers) -> bool:
        return self.elements is None or set(int(z) for z in numbers) <= set(self.elements)

    @property
    def sha256(self) -> str | None:
        return self.model.sha256

    def energies(self, frames, batch_size: int = 16) -> list[float]:
        """The energies (eV) of many structures at once through the adapter's batches: the same model as
        the calculator (each check that uses it also compares a calculator call with it), several times
        faster on small cells."""
        from ..data.structures import from_atoms

        m = self.model
        plain = []
        for a in frames:
            b = a.copy()
            b.calc, b.info = None, {}
            plain.append(b)
        out = []
        with torch.enable_grad() if m.adapter.needs_grad else torch.no_grad():
            for b in m.adapter.batches(m, from_atoms(plain), batch_size):
                out += m.adapter.predict(m, b).detach().double().cpu().reshape(-1).tolist()
        return out


def parse_spec(spec: str) -> tuple[str, str]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its file stem or name)."""
    from pathlib import Path

    label, sep, path = spec.partition("=")
    if not sep:
        path, label = spec, Path(spec).stem
    if not label or not path:
        raise IrrepprobeError(f"a model is PATH or LABEL=PATH; got {spec!r}")
    return label, path


def candidate(spec: str, fmt: str = "auto", trust: bool = False, device: str = "cpu", head: str | None = None) -> Candidate:
    """Load ``spec`` (``LABEL=PATH``) and give it the family's own calculator where it has one."""
    from ..adapters import load_model

    label, path = parse_spec(spec)
    model = load_model(path, fmt, trust=trust, device=device, head=head)
    adapter = model.adapter
    if hasattr(adapter, "calculator"):
        calc, own = adapter.calculator(str(model.info.get("path") or model.source), model), True
    else:
        calc, own = AdapterCalculator(model), False
    elements = model.info.get("elements") or _probe(model)
    return Candidate(label, model, calc, own, None if elements is None else [int(z) for z in elements])


def _probe(model: Loaded) -> list[int] | None:
    """The elements a model that does not declare them accepts: one-atom structures through its batches."""
    from ase import Atoms

    from ..data.structures import from_atoms

    known = []
    for z in range(1, 95):
        try:
            list(model.adapter.batches(model, from_atoms([Atoms(numbers=[z], positions=[[0, 0, 0]])]), 1))
        except IrrepprobeError:
            continue
        except Exception:  # noqa: BLE001 - a family that fails otherwise: no claim either way
            return None
        known.append(z)
    return known or None


def fresh(atoms, calc):
    """A copy of ``atoms`` on ``calc`` (the calculators cache per Atoms object)."""
    a = atoms.copy()
    a.calc = calc
    return a


def known_elements(candidates: list[Candidate]) -> set[int] | None:
    """The elements every candidate knows (None: none of them declares its elements)."""
    sets = [set(c.elements) for c in candidates if c.elements is not None]
    if not sets:
        return None
    out = sets[0]
    for s in sets[1:]:
        out &= s
    return out
