"""Fine-tuning for a fixed budget, shared by recovery and prune: what it fits (:func:`references`: labels,
or the model's own predictions), the loop (:func:`finetune`), the held-out outputs (:func:`outputs`) and
what a kept run was made from (:func:`fingerprint`)."""
from __future__ import annotations

import numpy as np
import torch

from ..adapters import Loaded, predict_all
from ..errors import IrrepprobeError

STEPS, LR, BATCH = 200, 1e-3, 16


def fingerprint(model: Loaded, structures) -> dict:
    """What a kept fine-tuning run was made from (the model file and head, the structures), so that a rerun
    reuses it only for the same model and data."""
    import hashlib

    h = hashlib.sha256()
    for t in (structures.numbers, structures.pos, structures.ptr):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    m = hashlib.sha256()
    if model.sha256 is None:  # a model built in memory: its weights
        for t in model.module.state_dict().values():
            if torch.is_tensor(t):  # every dtype, as raw bytes
                m.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"model": model.sha256 or m.hexdigest(), "head": model.info.get("head"), "data": h.hexdigest()}


def references(model: Loaded, batches, labels, force_labels, want_forces: bool) -> list[dict]:
    """Per batch, what fine-tuning fits: the labels where given, else the model's own predictions."""
    refs, start, astart = [], 0, 0
    for b in batches:
        ref = {"n_atoms": torch.bincount(b.atom_batch.cpu(), minlength=b.n_structures).double()[:, None]}
        if labels is None or (want_forces and force_labels is None):
            with torch.enable_grad() if want_forces or model.adapter.needs_grad else torch.no_grad():
                pred = model.adapter.predict(model, b, forces=want_forces).detach().double().cpu()
            own_f = model.adapter.forces(model, b) if want_forces else None
        ref["energy"] = (torch.as_tensor(labels[start:start + b.n_structures], dtype=torch.float64)
                         if labels is not None else pred)
        if want_forces:
            ref["forces"] = (torch.as_tensor(force_labels[astart:astart + b.n_atoms], dtype=torch.float64)
                             if force_labels is not None else own_f.detach().double().cpu())
        refs.append(ref)
        start, astart = start + b.n_structures, astart + b.n_atoms
    return refs


def finetune(model: Loaded, batches, refs: list[dict], steps: int = STEPS, lr: float = LR, seed: int = 0,
             bar=None) -> Loaded:
    """``model`` (in place) after ``steps`` Adam steps (cosine decay from ``lr``) on ``batches`` (shuffled, epoch after epoch) toward
    ``refs`` (per batch: ``energy`` [n, k], ``n_atoms`` [n, 1], optional ``forces`` [atoms, 3]). The loss is
    the mean squared error of the quantity (per atom for extensive ones) over its variance in ``refs``,
    plus that of the force components over their mean square: both count alike whatever their units."""
    per_atom, forces = model.quantity.per_atom, "forces" in refs[0]
    norm = (lambda r: r["n_atoms"]) if per_atom else (lambda r: 1.0)
    e_all = torch.cat([r["energy"] / norm(r) for r in refs])
    e_var = float(e_all.var()) if len(e_all) > 1 else 1.0
    e_var = e_var if e_var > 1e-12 else float(e_all.pow(2).mean()) or 1.0
    f_ms = float(torch.cat([r["forces"] for r in refs]).pow(2).mean()) if forces else 1.0
    f_ms = f_ms if f_ms > 1e-12 else 1.0
    params = [p for p in model.module.parameters() if p.requires_grad]
    if not params:
        raise IrrepprobeError("the model has no trainable parameters to fine-tune")
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # a fixed budget, ended at a small step
    gen, order = torch.Generator().manual_seed(seed), []
    adapter, keep = model.adapter, model.adapter.keep_graph
    adapter.keep_graph = True  # the energy (and forces) stay in the graph
    try:
        for _ in range(steps):
            if not order:
                order = torch.randperm(len(batches), generator=gen).tolist()
            k = order.pop()
            b, r = batches[k], refs[k]
            with torch.enable_grad():
                pred = adapter.predict(model, b, forces=forces)
                dtype = pred.dtype
                e = (pred - r["energy"].to(pred.device, dtype)) / (r["n_atoms"].to(pred.device, dtype) if per_atom else 1)
                loss = e.pow(2).mean() / e_var
                if forces:
                    f = adapter.forces(model, b)
                    loss = loss + (f - r["forces"].to(f.device, f.dtype)).pow(2).mean() / f_ms
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            if bar is not None:
                bar.update(1)
    finally:
        adapter.keep_graph = keep
    return model


def outputs(model: Loaded, batches, forces: bool) -> dict[str, np.ndarray]:
    """The quantity ``energy`` [n, k] (and ``forces`` [atoms, 3]) over ``batches``, as arrays."""
    e, f = predict_all(model, batches, forces)
    return {"energy": e.numpy()} if f is None else {"energy": e.numpy(), "forces": f.numpy()}
