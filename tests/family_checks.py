"""Checks every model family's tests run on its own real model (imported by the adapter test files)."""
import numpy as np
import torch

from irrepprobe.capture import blocks, hooked, keeping, to_mul_ir
from irrepprobe.metrics import masked, recovery


def masked_and_recovered(model, structures, l: int, forces: bool) -> None:
    """The masked copy zeroes order ``l`` at every mask point, spherical harmonics among them, and leaves
    ``model`` as it was; recovery fine-tunes it (on forces too, where the family computes them)."""
    copy = masked(model, [l])
    points = model.adapter.mask_points(copy)
    assert any(p.kind == "edge" and p.role == "input" and any(b.l == l for b in blocks(p.irreps)) for p in points)
    some = structures.take(np.arange(4))
    batch = next(model.adapter.batches(model, some, 4))
    store = {}
    grad = torch.enable_grad() if model.adapter.needs_grad else torch.no_grad()
    with hooked(copy.module, keeping(points, store)), grad:
        model.adapter.predict(copy, batch)
    hit = [p for p in points if any(b.l == l for b in blocks(p.irreps))]
    assert hit and all(p.name in store for p in hit)
    for p in hit:
        x = to_mul_ir(store[p.name].detach(), p.irreps, p.layout)
        cols = torch.cat([b.index for b in blocks(p.irreps) if b.l == l])
        assert x[:, cols].abs().max() == 0, p.name
    store.clear()
    with hooked(model.module, keeping(hit[:1], store)), grad:
        model.adapter.predict(model, batch)
    assert to_mul_ir(store[hit[0].name].detach(), hit[0].irreps, hit[0].layout).abs().max() > 0  # untouched
    table = recovery(model, structures.take(np.arange(min(12, len(structures)))), orders=[l], steps=2, batch_size=4, log=lambda *_: None)
    want = {"control", "dependence", "recovery"}
    assert set(table["leg"]) == want and np.isfinite(table["scale_free"]).all()
    assert ("forces" in set(table["quantity"])) == forces
    assert (table.loc[table["leg"] == "dependence", "scale_free"] > 0).all()
