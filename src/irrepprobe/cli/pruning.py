"""``irrepprobe prune``: its options checked before any model is loaded; our checkpoints retrained, other
families rebuilt by surgery (orders, channels), fine-tuned, written back and, with ``--front``, a set of
such cuts measured for speed and error side by side."""
from __future__ import annotations

from .checks import at_least, check_device, check_head, directory, fraction, undo_on_refusal
from .commands import _command


def cmd_prune(args) -> int:
    from pathlib import Path

    from ..errors import IrrepprobeError
    from ..metrics import THRESHOLD
    from ..prune import prune
    from ..report.compare import prune_report

    cuts = args.channels is not None or args.front is not None
    if args.drop_l and args.auto:
        raise IrrepprobeError("give --drop-l L[,L...] or --auto, not both")
    if args.front is not None and (args.drop_l or args.auto or args.channels is not None):
        raise IrrepprobeError("--front names its own cuts: give it without --drop-l, --auto or --channels")
    if args.reference and args.front is None:
        raise IrrepprobeError("--reference is measured beside the cuts of --front: it goes with --front")
    if args.channels is not None and args.auto:
        raise IrrepprobeError("--channels goes with --drop-l (or alone), not with --auto")
    if not args.drop_l and not args.auto and not cuts:
        raise IrrepprobeError("give --drop-l L[,L...] (orders to drop), --auto (the orders found unused), --channels "
                              "SPEC or --front")
    drop = [] if cuts else None
    if args.drop_l:
        try:
            drop = [int(x) for x in args.drop_l.split(",") if x.strip()]
        except ValueError:
            raise IrrepprobeError(f"--drop-l takes orders like 1,2; got {args.drop_l!r}") from None
        if not drop or min(drop) < 0:
            raise IrrepprobeError(f"--drop-l takes orders like 1,2; got {args.drop_l!r}")
    if args.recovery_steps is not None and not args.auto:
        raise IrrepprobeError("--recovery-steps decides what --auto drops: it goes with --auto")
    at_least("--recovery-steps", args.recovery_steps, 1)
    at_least("--seeds", args.seeds, 1)
    if args.validate:
        from ..validate import parse_suites

        parse_suites(args.validate)
    fraction("--threshold", args.threshold)
    at_least("--ablation-molecules", args.ablation_molecules, 0, "0 (all) or a positive number")
    at_least("--steps", args.steps, 1)
    at_least("--md-steps", args.md_steps, 0, "0 (no MD speed) or a number of steps")
    at_least("--subset", args.subset, 1, "a positive number of structures")
    directory("--out", args.out)
    check_device(args)
    from ..adapters import detect, get_adapter

    adapter = detect(args.checkpoint) if args.format == "auto" else get_adapter(args.format)
    head = check_head(args, adapter)
    if adapter.name == "irrepprobe" and (cuts or args.speedup is not None or args.equal_channels):
        raise IrrepprobeError("--channels, --front, --speedup, --equal-channels: for other families (surgery); our "
                              "checkpoints are retrained without whole orders")
    if adapter.name != "irrepprobe":
        ours = [flag for flag, given in (("--warm-start", args.warm_start),
                                         ("--threshold", args.threshold is not None),
                                         ("--ablation-molecules", args.ablation_molecules is not None),
                                         ("--recovery-steps", args.recovery_steps is not None)) if given]
        if ours:
            raise IrrepprobeError(f"{', '.join(ours)}: for our checkpoints only; a {adapter.name} model is pruned by "
                                  "surgery and fine-tuned for --steps (with --auto too)")
        out = Path(args.out) if args.out else Path(f"prune-{Path(args.checkpoint).stem}")
        with undo_on_refusal(out):
            return _prune_other(args, adapter, drop, out, head)
    theirs = [flag for flag, given in (("--data", args.data), ("--target", args.target),
                                       ("--subset", args.subset is not None), ("--steps", args.steps is not None),
                                       ("--md-steps", args.md_steps is not None), ("--held-out", args.held_out),
                                       ("--shift-references", args.shift_references),
                                       ("--no-scratch", args.no_scratch), ("--validate", args.validate)) if given]
    if theirs:
        raise IrrepprobeError(f"{', '.join(theirs)}: for other families; our models are retrained from scratch on "
                              "their own QM9 config")
    out = Path(args.checkpoint).parent / "prune" if not args.out else Path(args.out)
    threshold = THRESHOLD if args.threshold is None else args.threshold
    with undo_on_refusal(out):
        res = prune(args.checkpoint, out, drop=drop, seeds=args.seeds or 1, threshold=threshold,
                    molecules=args.ablation_molecules or None, warm=args.warm_start,
                    recovery_steps=args.recovery_steps)
        md = prune_report(res, out, Path(args.checkpoint).name, threshold, command=_command(args))
    print(res["runs"][["variant", "seed", "ls", "params", "test_mae", "knn_r2_target"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> {md}")
    return 0


def _prune_other(args, adapter, drop, out, head=None) -> int:
    """prune for SevenNet, MACE, NequIP: surgery, fine-tuning on --data, the family's own file
    (:func:`irrepprobe.prune.prune_model`)."""
    from ..prune import prune_model

    done = prune_model(args.checkpoint, adapter, drop, args.data, out=out, subset=args.subset, target=args.target,
                       steps=200 if args.steps is None else args.steps,
                       md_steps=20 if args.md_steps is None else args.md_steps, trust=args.trust,
                       device=args.device or "auto", command=_command(args), head=head, seeds=args.seeds or 1,
                       held_out=args.held_out, shift_references=args.shift_references, scratch=not args.no_scratch,
                       channels=args.channels, speedup=args.speedup, equal=args.equal_channels,
                       front=args.front, reference=args.reference)
    if done is None:
        return 0
    if "front" in done:
        res = done["front"]
        print(res["table"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"-> {done['report']}")
        # the first seed of each cut beside the original (and the reference) against DFT
        specs = [f"{name}={path}" for name, path in res["files"].items()]
    else:
        res = done["result"]
        print(res["table"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"pruned model: {res['pruned']} -> {done['report']}")
        specs = [f"original={args.checkpoint}", f"pruned-before={res['out'] / ('pruned-before' + adapter.suffix)}"]
        specs += [f"pruned-seed{k}={f}" for k, f in enumerate(res["files"])]
    if args.validate:
        from ..report.validate import validate_report
        from ..validate import parse_suites, validate

        v = validate(specs, res["out"] / "validate", fmt=adapter.name, trust=args.trust,
                     suites=parse_suites(args.validate), device=args.device or "cpu", head=head)
        print(f"validation -> {validate_report(v, res['out'] / 'validate', command=_command(args))}")
    return 0
