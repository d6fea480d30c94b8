"""An intervention as data: :class:`Edit` says where (a point), what (some of its blocks) and how.

* ``zero``: the blocks set to zero (ablation);
* ``mean``: set to a baseline's per-channel means (for l > 0 the rotation average, zero);
* ``resample``: set to the same blocks of another structure, from a baseline (ablation);
* ``mask``: multiplied by zero, the order switched off in a masked model that is fine-tuned (the product
  keeps the graph whole for training);
* ``keep``: every other block of the point multiplied by zero.

``channels`` narrows an edit to some channels of each block (one tuple of channel indices per block, in
the order of ``blocks``): a channel mask is ``Edit(point, ("1e",), "mask", channels=((3, 17),))``, the
function a model pruned of those channels computes.

The same edits are applied by the one hook mechanism for a single pass (:func:`edit_hooks` under
:func:`~irrepprobe.intervene.hooked`) and attached to a model for fine-tuning (:func:`attach`); one order
is selected in one way (:func:`order_edits`). ``mean`` and ``resample`` take their values from a
baseline: an object with ``mean(point) -> [dim]`` and ``donor(point, blocks, rows) -> [rows, dim]`` in
``mul_ir`` (:class:`irrepprobe.metrics.interventions.Baselines` builds one per batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import IrrepprobeError
from ..irreps import blocks as blocks_of
from .hooks import replacing
from .points import Point, as_points

HOWS = ("zero", "mean", "resample", "mask", "keep")


@dataclass(frozen=True)
class Edit:
    point: str  # a point's name
    blocks: tuple[str, ...]  # its blocks' names, e.g. ("1o", "2e")
    how: str = "zero"
    channels: tuple[tuple[int, ...], ...] | None = None  # per block, the channels acted on (None: all)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.how not in HOWS:
            raise IrrepprobeError(f"unknown edit {self.how!r}; valid: {', '.join(HOWS)}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(tuple(int(u) for u in c) for c in self.channels))
            if len(self.channels) != len(self.blocks):
                raise IrrepprobeError(f"an edit of {len(self.blocks)} blocks names channels for {len(self.channels)}")

    def __str__(self) -> str:
        if self.channels is None:
            return f"{self.how} {self.point} {'+'.join(self.blocks)}"
        return f"{self.how} {self.point} " + "+".join(f"{b}[{len(c)} channels]" for b, c in zip(self.blocks, self.channels))


def order_edits(points, orders, how: str = "zero") -> list[Edit]:
    """The edits that act on every block of the orders ``orders`` (an int or several) at ``points``: one per
    point that carries one, in the points' order."""
    orders = {int(orders)} if isinstance(orders, int) else {int(l) for l in orders}
    out = []
    for p in as_points(points):
        names = [b.name for b in blocks_of(p.irreps) if b.l in orders]
        if names:
            out.append(Edit(p.name, tuple(names), how))
    return out


def describe(edits) -> str:
    """The edits as one line, for the tables that rest on them."""
    return "; ".join(str(e) for e in edits)


def _columns(p: Point, edit: Edit):
    parts = {b.name: b for b in blocks_of(p.irreps)}
    unknown = [n for n in edit.blocks if n not in parts]
    if unknown:
        raise IrrepprobeError(f"{p.name} has no block {unknown[0]!r}; its blocks: {', '.join(parts)}")
    chosen = [parts[n] for n in edit.blocks]
    if edit.channels is None:
        return chosen, torch.cat([b.index for b in chosen])
    cols = []
    for b, chans in zip(chosen, edit.channels):
        bad = [u for u in chans if not 0 <= u < b.mul]
        if bad:
            raise IrrepprobeError(f"{p.name} block {b.name} has {b.mul} channels; there is no channel {bad[0]}")
        cols.append(b.index.reshape(b.mul, b.dim)[list(chans)].reshape(-1))
    return chosen, torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)


def _function(p: Point, edit: Edit, baseline):
    """[rows, dim] in ``mul_ir`` -> the same with ``edit`` applied."""
    chosen, cols = _columns(p, edit)
    if edit.how in ("mask", "keep"):
        keep = torch.ones(p.irreps.dim) if edit.how == "mask" else torch.zeros(p.irreps.dim)
        keep[cols] = 0 if edit.how == "mask" else 1
        return lambda x: x * keep.to(x)
    if edit.how != "zero" and baseline is None:
        raise IrrepprobeError(f"a {edit.how} edit needs a baseline to take its values from")

    def fn(x):
        new = x.clone()
        c = cols.to(x.device)
        if edit.how == "zero":
            new[:, c] = 0
        elif edit.how == "mean":
            new[:, c] = baseline.mean(p).to(x)[c]
        else:
            new[:, c] = baseline.donor(p, chosen, x.shape[0]).to(x)[:, c]
        return new
    return fn


def edit_hooks(points, edits, baseline=None) -> list[tuple[str, object]]:
    """Hooks (for :func:`~irrepprobe.intervene.hooked`) that apply ``edits`` at ``points``, in order:
    several edits of one point run one after another."""
    by_name = {p.name: p for p in as_points(points)}
    missing = [e.point for e in edits if e.point not in by_name]
    if missing:
        raise IrrepprobeError(f"no point {missing[0]!r} to edit; there are: {', '.join(list(by_name)[:12])}")
    hooks = []
    for e in edits:
        p = by_name[e.point]
        hooks += replacing([p], {p.name: _function(p, e, baseline)})
    return hooks


def attach(module: torch.nn.Module, points, edits) -> list:
    """``edits`` held on ``module`` for good (a masked model trains with them): forward hooks that belong
    to it. Returns their handles."""
    modules = dict(module.named_modules())
    return [modules[name].register_forward_hook(fn) for name, fn in edit_hooks(points, edits)]
