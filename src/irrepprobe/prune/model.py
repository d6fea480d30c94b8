"""``prune`` for a model file of another family: its options and data checked before any work, then one
cut (:func:`~irrepprobe.prune.family.prune_family`) or a front of several
(:func:`~irrepprobe.prune.front.front`), and their reports."""
from __future__ import annotations

from pathlib import Path

from ..errors import IrrepprobeError
from ..metrics.finetune import STEPS
from .family import check_drop, check_readable, prune_family

def prune_model(source, adapter, drop: list[int] | None, data, out=None, subset: int | None = None,
                target: str | None = None, steps: int = STEPS, md_steps: int = 20, trust: bool = False,
                device: str = "auto", command: str | None = None, head: str | None = None, seeds: int = 1,
                held_out=None, shift_references: bool = False, scratch: bool = True, channels: str | None = None,
                speedup: float | None = None, equal: bool = False, front: str | None = None,
                reference: str | None = None, log=print) -> dict | None:
    """Prune the model file ``source`` of another family (``adapter``) by surgery: ``drop`` the given orders,
    or (None) those :func:`~irrepprobe.metrics.recovery` finds dispensable after ``steps`` of fine-tuning
    with the order masked (as many of them as the family can drop); fine-tune on ``data`` (its ``target``
    label where it has one, else the original's own energies and forces), write the smaller model in the
    family's format to ``out`` and compare (:func:`prune_family`, :func:`~irrepprobe.report.compare.family_report`).
    ``head``: the MACE head or SevenNet fidelity fine-tuned toward and compared at (the file keeps every one).
    ``held_out``: a file of structures to compare on (other compositions or trajectories than ``data``);
    without it the last 20% of ``data``. ``seeds``, ``shift_references``, ``scratch``: :func:`prune_family`.
    ``channels``: the ``--channels`` SPEC (:mod:`irrepprobe.prune.channels`), with ``speedup`` for ``auto``
    and ``equal`` channel counts across the orders of a layer. ``front``: the ``--front`` SETTINGS
    (:func:`~irrepprobe.prune.front.front`), with ``reference`` (the family's official smaller model)
    beside the cuts; returns ``{"front": ..., "report": path}`` then.
    Returns ``{"result": ..., "report": path}``, or None when there is nothing to prune."""
    from ..adapters import load_model
    from ..capture import resolve_data
    from ..report.compare import family_report
    from ..runtime import resolve_device

    if not data:
        raise IrrepprobeError(f"--data FILE|qm9[:split] is needed to fine-tune a {adapter.name} model (its labels "
                              "where it has them, else the original's own energies and forces)")
    if steps < 1:
        raise IrrepprobeError(f"--steps must be at least 1, got {steps}")
    if md_steps < 0:
        raise IrrepprobeError(f"--md-steps must be 0 (no MD speed) or a number of steps, got {md_steps}")
    if subset is not None and subset < 1:
        raise IrrepprobeError(f"--subset must be a positive number of structures, got {subset}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise IrrepprobeError(f"--out {out} is a file, not a directory")
    if seeds < 1:
        raise IrrepprobeError(f"--seeds must be at least 1, got {seeds}")
    if speedup is not None and (channels or "").strip() != "auto":
        raise IrrepprobeError("--speedup is the budget of --channels auto: it goes with it")
    if speedup is not None and not speedup > 1:
        raise IrrepprobeError(f"--speedup must be above 1 (how many times fewer operations), got {speedup:g}")
    if equal and channels is None:
        raise IrrepprobeError("--equal-channels goes with --channels")
    held = None
    if held_out is not None:
        held = resolve_data(held_out, None)
        if target:
            held.require_label(target)
    qm9 = data == "qm9" or data.startswith("qm9:")
    if not qm9:  # a file: read and its labels checked before the model is loaded (seconds)
        structures = resolve_data(data, None, subset)
        if target:
            structures.require_label(target)
    model = load_model(source, adapter.name, trust=trust, device=resolve_device(device or "auto"), head=head)
    if drop is not None:
        drop = check_drop(model, drop, channels is not None or front is not None)  # before any work
    equal = equal or model.adapter.equal_channels  # MACE: one count for every block, asked or not
    counts = None
    if channels is not None:
        from .channels import parse_channels

        counts = parse_channels(channels, model.adapter.channel_groups(model), drop or [], equal)
    cuts = ref_model = None
    if front is not None:
        from .front import parse_front

        cuts = parse_front(front, model, equal)
        if reference:
            ref_model = load_model(reference, adapter.name, trust=trust, device=model.device, head=head)
    if qm9:  # the model's own split, where it has one
        structures = resolve_data(data, model, subset)
    if target:
        structures.require_label(target)
    label = target or (model.quantity.name if model.quantity.name in structures.labels else None)
    if label is None and model.quantity.name in structures.partial_labels:
        log(f"label {model.quantity.name} is on only some structures of {data}: distilling the original's own "
            "energies instead")
    n = len(structures)
    if n < (3 if drop is None else 1 if held is not None else 2):
        raise IrrepprobeError("pruning needs structures to fine-tune on and to hold out"
                              + (" (and, with --auto, recovery needs 3)" if drop is None else "")
                              + f"; {data} has {n}")
    check_readable(model, structures)  # e.g. an element the model does not know: before any work
    if held is not None:
        check_readable(model, held)
    out = Path(out or f"prune-{Path(source).stem}")
    if drop is None:
        from ..metrics import dispensable, recovery

        table = recovery(model, structures, label=label, steps=steps, out=out / "recovery")
        found = dispensable(table)
        log("orders dispensable after fine-tuning with the order masked: "
            + (", ".join(f"l={l}" for l in found) or "none"))
        drop = list(found)
        while drop and model.adapter.why_not_without(model, drop):  # e.g. SevenNet: only the highest orders
            drop = drop[1:]
        if not drop:
            log("nothing to prune")
            return None
    if cuts is not None:
        from ..report.compare import front_report
        from .front import front as run_front

        kw = {"steps": steps, "label": label, "shift_references": shift_references, "speedup": speedup or 2.0,
              "equal": equal}
        res = run_front(model, structures, cuts, out, held=held, reference=ref_model, seeds=seeds, md_steps=md_steps,
                        prune_kwargs=kw, log=log)
        return {"front": res, "report": front_report(res, model, data, command=command)}
    res = prune_family(model, structures, drop, out, steps=steps, label=label, md_steps=md_steps, seeds=seeds,
                       held=held, shift_references=shift_references, scratch=scratch, channels=counts,
                       speedup=speedup or 2.0, equal=equal, log=log)
    return {"result": res, "report": family_report(res, model, data, command=command)}
