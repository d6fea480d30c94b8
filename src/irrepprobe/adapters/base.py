"""The adapter protocol: what capture, metrics and report need to know about a model family.

An :class:`Adapter` loads a model (with an explicit trust decision), names its capture points
(:class:`Point`: module, irreps, node or edge, layout, how to read the tensor out of the module's output
and write a changed one back), turns :class:`~irrepprobe.data.structures.Structures` into the model's own
batches (:class:`Batch`), predicts the quantity that ablation and probes use, and gives an untrained
control and a summary. Everything above ``adapters/`` sees a model only through a :class:`Loaded`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import IrrepprobeError
from ..intervene import hooked
from ..intervene.points import KINDS, Point  # noqa: F401  (the protocol names them)
from ..runtime import grad_context

@dataclass
class Batch:
    """A batch in the model's own input format, with what capture needs to pool its rows."""

    inputs: Any  # what the model's forward takes
    atom_batch: torch.Tensor  # [atoms] structure (0..n-1 within the batch) of each atom
    rows: torch.Tensor  # [n] positions of the batch's structures in the Structures it came from
    edge_batch: torch.Tensor | None = None  # [edges] structure of each edge, when the adapter knows the graph

    @property
    def n_structures(self) -> int:
        return int(self.rows.numel())

    @property
    def n_atoms(self) -> int:
        return int(self.atom_batch.numel())

    @property
    def n_edges(self) -> int | None:
        return None if self.edge_batch is None else int(self.edge_batch.numel())


@dataclass
class Quantity:
    """What :meth:`Adapter.predict` returns per structure."""

    name: str  # "energy", or our model's target ("u0_atom", "dipole_vec", ...)
    unit: str
    irreps: str = "1x0e"
    per_atom: bool = False  # True: extensive, compared per atom when no label is given


@dataclass
class Loaded:
    """A loaded model and everything the adapter learned while loading it."""

    module: torch.nn.Module
    adapter: "Adapter"
    source: str  # the path, or the name the family's package resolved
    sha256: str | None  # of the model file
    quantity: Quantity
    info: dict = field(default_factory=dict)  # family-specific: config, cutoff, elements, split, ...

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


class Adapter:
    """One model family. Subclasses override what differs; the defaults suit e3nn-style modules."""

    name = "base"
    needs_grad = False  # True: even the energy-only predict needs gradients on (capture keeps grad on)
    has_forces = False  # True: predict(..., forces=True) computes forces (by autograd): they can be scored
    # True: predict returns an output still in the autograd graph (attribution sets it for its pass;
    # families whose force step frees the graph keep it only when asked, as it costs memory)
    keep_graph = False
    # families whose models can have several heads (MACE) or fidelities (SevenNet's modalities): the capture
    # flag that picks one ("head", "modality"), the family's name and what it calls one / several of them
    head_flag: str | None = None
    family = ""  # e.g. "MACE"
    suffix = ".pt"  # of the files :meth:`write` writes
    head_words = ("head", "heads")

    def accepts(self, source: str) -> bool:
        """Whether ``--format auto`` should pick this adapter for ``source`` (cheap, no unpickling)."""
        return False

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        raise NotImplementedError

    def choose(self, model: Loaded, head: str | None = None) -> Loaded:
        """``model`` measured at ``head``, one of ``model.info["heads"]`` (a copy sharing the module);
        None: its default one (the only one, or one the family marks as default). Refused, listing the
        names, when the model has several and none is the default, so that none is measured silently."""
        heads, (one, several) = list(model.info.get("heads") or []), self.head_words
        if head is None:
            if heads and model.info.get("head") is None:
                raise IrrepprobeError(f"this {self.family} model has several {several}: {', '.join(heads)}; "
                                      f"choose one with --{self.head_flag} NAME")
            return model
        if self.head_flag is None:
            raise IrrepprobeError(f"{self.name} models have no heads or fidelities to choose from (got {head!r})")
        if not heads:
            raise IrrepprobeError(f"this {self.family} model has a single {one}: none to choose (got {head!r})")
        if head not in heads:
            raise IrrepprobeError(f"this {self.family} model has no {one} {head!r}; valid: {', '.join(heads)}")
        return replace(model, info={**model.info, "head": head})

    def points(self, model: Loaded) -> list[Point]:
        """Every point this adapter can capture, in forward order."""
        raise NotImplementedError

    def channel_groups(self, model: Loaded) -> list[tuple[str, tuple[str, ...], str]]:
        """``(name, points, irreps)`` of each place whose channels :meth:`without_orders` can prune (``keep``):
        the points whose blocks keep the same number of channels, and their irreps. None here: a family
        whose surgery prunes orders only."""
        return []

    # True: the family's models keep the same channel count in every block (MACE's channel-wise product)
    equal_channels = False

    def tied_points(self, model: Loaded) -> list[str]:
        """Points of :meth:`channel_groups` whose blocks keep one set of channels (channel k of every block
        together, as a channel-wise product reads them)."""
        return []

    def mask_points(self, model: Loaded) -> list[Point]:
        """Where a masked model (:func:`irrepprobe.metrics.masked`) zeroes an order: every point but the
        output, the spherical harmonics among them where the family exposes them as a point."""
        return [p for p in self.points(model) if p.role != "output"]

    def default_points(self, model: Loaded) -> list[str]:
        """Names of the points captured when the user names none: the node features leaving each layer."""
        return [p.name for p in self.points(model)]

    def batches(self, model: Loaded, structures, batch_size: int = 64) -> Iterator[Batch]:
        raise NotImplementedError

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        """[structures, k] the model's :attr:`Loaded.quantity` for each structure of ``batch``. The
        cheapest pass by default: families that take forces by autograd skip that step unless ``forces``
        (then :meth:`forces` returns them)."""
        raise NotImplementedError

    def forces(self, model: Loaded, batch: Batch) -> torch.Tensor | None:
        """[atoms, 3] forces on ``batch`` where the family computes them (those of the last
        ``predict(..., forces=True)`` on it, else a new pass)."""
        return None

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded | None:
        """Same architecture, re-initialised (the control for probes), or None when impossible.
        ``seed`` None: the family's own choice (ours: the run's seed, i.e. the weights training began from)."""
        return None

    def without_orders(self, model: Loaded, drop: list[int], keep: dict | None = None) -> Loaded | None:
        """The model with the orders in ``drop`` removed everywhere (spherical harmonics and every path
        through them) and, where the family prunes channels, only the channels ``keep`` names (point ->
        block -> channels kept, at the points of :meth:`channel_groups`); None when the family cannot build
        it or the output needs the order."""
        return None

    def why_not_without(self, model: Loaded, drop: list[int]) -> str | None:
        """Why :meth:`without_orders` cannot drop ``drop`` from ``model`` (one line), or None when it can."""
        return f"the {self.name} adapter cannot rebuild a model without some of its orders"

    def write(self, model: Loaded, path) -> Path:
        """``model`` in the family's own file format, readable by the family's own tools."""
        raise IrrepprobeError(f"the {self.name} adapter cannot write models in its family's format")

    def summary(self, model: Loaded) -> str:
        raise NotImplementedError

    def labels_of(self, model: Loaded, structures, target: str | None) -> str | None:
        """The label of ``structures`` that holds the model's own quantity, or None (then utilisation
        measures how far ablation moves the prediction instead of the error)."""
        if target is None:
            return None
        if target not in structures.labels:
            if hasattr(structures, "require_label"):  # says where it is: on some structures, per atom, nowhere
                structures.require_label(target)
            have = ", ".join(structures.labels) or "none"
            raise IrrepprobeError(f"the data has no label {target!r}; its labels: {have}")
        return target

    def label_values(self, model: Loaded, structures, name: str):
        """[n, k] the label ``name`` in the basis of :meth:`predict`'s output (default: as stored)."""
        v = structures.labels[name]
        return v.reshape(len(v), -1)


class ForcesOfPredict:
    """For families whose forward computes forces with the energy: ``predict(..., forces=True)`` keeps
    them with :meth:`keep_forces`, and :meth:`forces` returns them (predicting with forces first unless
    the last pass was of this model, head and batch: every model derived from a loaded one, masked or
    pruned, shares its adapter, and must not be handed another's forces)."""

    has_forces = True
    _last: tuple[tuple, torch.Tensor | None] | None = None

    @staticmethod
    def _key(model: Loaded, batch: Batch) -> tuple:
        return model.module, model.info.get("head"), batch

    def keep_forces(self, model: Loaded, batch: Batch, forces: torch.Tensor | None) -> None:
        """Kept detached, unless ``keep_graph`` (fine-tuning on forces needs their graph)."""
        self._last = (self._key(model, batch), None if forces is None else forces if self.keep_graph else forces.detach())

    def forces(self, model: Loaded, batch: Batch) -> torch.Tensor | None:
        last = self._last
        stale = last is None or last[1] is None or last[0][0] is not model.module or last[0][2] is not batch
        if stale or last[0][1] != model.info.get("head"):
            self.predict(model, batch, forces=True)
        return self._last[1]


def passes(model: Loaded, batches, forces: bool = False, hooks=(),
           before: Callable[[Batch], None] | None = None) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor | None]]:
    """The one predict-over-batches loop: per batch, ``(batch, [n, k] prediction, [atoms, 3] forces or
    None)``, with ``hooks`` in place (:func:`~irrepprobe.intervene.hooked`) and gradients on where the
    family needs them or forces are asked. ``before(batch)`` runs before each pass (a recorder's
    ``begin``). Outputs are as the adapter returns them: detach what you keep."""
    with hooked(model.module, hooks):
        for batch in batches:
            if before is not None:
                before(batch)
            with grad_context(model.adapter.needs_grad or forces):  # not across the yield: the caller's own
                out = model.adapter.predict(model, batch, forces=forces)
                f = model.adapter.forces(model, batch) if forces else None
            yield batch, out, f


def predict_all(model: Loaded, batches, forces: bool = False, hooks=()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[structures, k] predictions over ``batches`` (float64, on the CPU) and, with ``forces``, the [atoms, 3]
    forces, by :func:`passes`."""
    e, f = [], []
    for _, out, fb in passes(model, batches, forces, hooks):
        e.append(out.detach().double().cpu())
        if forces:
            f.append(fb.detach().double().cpu())
    return torch.cat(e), (torch.cat(f) if forces else None)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
