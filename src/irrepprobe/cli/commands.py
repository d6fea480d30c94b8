"""The ``irrepprobe`` subcommands: each parses what the library does not, calls it and prints. Heavy
libraries are imported inside each command, so that ``--help`` stays fast."""
from __future__ import annotations

import sys

from .checks import at_least, check_device, check_head, directory, fraction, refuse, undo_on_refusal


def _config(args):
    from ..config import apply_overrides, load_config
    from ..models import preset

    if args.config and args.preset:
        from ..errors import IrrepprobeError

        raise IrrepprobeError("give a CONFIG file or --preset, not both")
    if args.config:
        cfg = load_config(args.config)
    elif args.preset:
        cfg = preset(args.preset)
    else:
        return None
    overrides = list(args.set or [])
    if getattr(args, "device", None):
        overrides.append(f"train.device={args.device}")
    if getattr(args, "cache_dir", None):
        overrides.append(f"data.cache_dir={args.cache_dir}")
    return apply_overrides(cfg, overrides)


def cmd_train(args) -> int:
    from ..errors import IrrepprobeError
    from ..train import train

    directory("--out", args.out)
    check_device(args)
    cfg = _config(args)
    if cfg is None and not args.resume:
        raise IrrepprobeError("give a CONFIG file or --preset NAME (see: irrepprobe presets)")
    if cfg is not None:
        cfg.validate()
    if cfg is not None and not args.resume:  # on resume the run's own saved config is used
        import yaml

        print("# resolved config")
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    with undo_on_refusal(args.out):
        train(cfg, args.out, resume=args.resume, progress=not args.no_progress and sys.stderr.isatty())
    return 0


def cmd_evaluate(args) -> int:
    from ..train import evaluate

    at_least("--batch-size", args.batch_size, 1)
    check_device(args)
    df = evaluate(args.checkpoint, split=args.split, device=args.device or "auto",
                  batch_size=args.batch_size, cache_dir=args.cache_dir)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_capture(args) -> int:
    from pathlib import Path

    from ..adapters import detect, get_adapter, load_model
    from ..capture import capture, resolve_data
    from ..errors import IrrepprobeError
    from ..examples import example_checkpoint
    from ..runtime import resolve_device

    source = args.model or str(example_checkpoint())
    if args.data is not None and args.split is not None:
        raise IrrepprobeError("--split is for QM9 without --data; with --data give qm9:SPLIT or a file")
    if args.split is not None and args.split not in ("train", "val", "test"):
        raise IrrepprobeError(f"unknown QM9 split {args.split!r}; valid: train, val, test")
    at_least("--subset", args.subset, 1, "a positive number of structures")
    at_least("--batch-size", args.batch_size, 1)
    at_least("--check-equivariance", args.check_equivariance, 0, "0 (skip the check) or a number of structures")
    directory("--out", args.out)
    check_device(args)
    data = args.data or f"qm9:{args.split or 'test'}"
    structures = None
    if not (data == "qm9" or data.startswith("qm9:")):  # a file: read, and --target checked, before the model loads
        structures = resolve_data(data, None, args.subset, args.cache_dir)
        if args.target:
            structures.require_label(args.target)
    adapter = detect(source) if args.format == "auto" else get_adapter(args.format)
    head = check_head(args, adapter)
    model = load_model(source, adapter.name, trust=args.trust, device=resolve_device(args.device or "auto"),
                       head=head)
    if args.format == "auto":
        print(f"model format: {model.adapter.name} (picked from {source}; --format to choose)")
    if structures is None:  # QM9: the model's own split, where it has one
        structures = resolve_data(data, model, args.subset, args.cache_dir)
    if args.target:
        structures.require_label(args.target)
    target = args.target or (model.quantity.name if model.quantity.name in structures.labels else None)
    if target is None and model.quantity.name in structures.partial_labels:
        print(f"label {model.quantity.name} is on only some structures of {data}: predictions only "
              "(--subset to the labelled ones, if they come first)")
    out = args.out or _capture_dir(args.model, data)
    directory("--out", out)
    with undo_on_refusal(out):
        cap = capture(model, structures, args.points, out, args.batch_size, args.save_nodes, target=target,
                      trusted=args.trust, check_equivariance=args.check_equivariance,
                      target_named=args.target is not None)
    m = cap.meta
    print(f"captured {len(cap.points)} points over {m['n_molecules']} structures of {m['data']} with "
          f"{Path(m['model']).name} in {m['seconds']:.1f} s -> {cap.path}")
    print(m["model_summary"])
    print(f"own quantity: {m['quantity']['name']} ({m['quantity']['unit']}); "
          + (f"label {m['target']}: errors stored" if m.get("target") else
             "no label of it on the model's reference in the data: predictions only"))
    for name, why in m["skipped"].items():
        print(f"skipped {name}: {why}")
    print(cap.summary.drop(columns=["mean_sq_norm"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    from ..capture import equivariance_line

    eq = m.get("equivariance")
    if eq is None or eq["passed"]:  # capture() itself printed a failure, before the table
        print(equivariance_line(eq))
    return 0


def _capture_dir(model, data: str):
    """Default capture directory: capture-example for the shipped model; beside a model file; else here."""
    from pathlib import Path

    if model is None:
        return Path("capture-example")
    tag = "qm9-" + (data.partition(":")[2] or "test") if data.startswith("qm9") else Path(data).stem
    path = Path(model)
    if path.is_file():
        return path.parent / f"capture-{tag}"
    return Path(f"capture-{path.name.replace(':', '-').replace('/', '-')}-{tag}")


def _command(args) -> str:
    """The command line as typed, for reports that state what produced them."""
    import shlex

    return "irrepprobe " + " ".join(shlex.quote(a) for a in args.argv)


def cmd_report(args) -> int:
    from pathlib import Path

    cap_path = args.capture
    if not (Path(cap_path) / "meta.json").is_file():
        refuse(f"{cap_path} is not a capture directory (no meta.json; make one with irrepprobe capture)")
    necessity = _necessity(args.necessity)
    # the plain ranges first, before the heavy imports (make_report checks them all again, and the rest)
    fraction("--threshold", args.threshold)
    at_least("--first-look", args.first_look, 0, "0 (off) or a number of structures")
    at_least("--controls", args.controls, 1)
    at_least("--seed", args.seed, 0, "0 or a positive integer")
    at_least("--recovery-steps", args.recovery_steps, 1)
    if args.recovery_lr is not None and not args.recovery_lr > 0:
        refuse(f"--recovery-lr must be a positive learning rate, got {args.recovery_lr:g}")
    if not args.recovery and (args.recovery_steps is not None or args.recovery_lr is not None):
        refuse("--recovery-steps and --recovery-lr set up --recovery: add --recovery")
    at_least("--ablation-molecules", args.ablation_molecules, 0, "0 (all) or a positive number")
    low = 10 if args.map_criterion else 4
    if args.map_points != 0:
        at_least("--map-points", args.map_points, low, f"0 (all) or at least {low}"
                  + (" with --map-criterion" if args.map_criterion else ""))
    check_device(args)
    from ..study import make_report

    out = Path(args.out) if args.out else Path(cap_path) / "report"
    directory("--out", out)
    print(f"report on {cap_path}")
    with undo_on_refusal(out):
        res = _report(args, make_report, cap_path, out, necessity)
    v = res["verdict"]
    print("unused blocks: " + (", ".join(f"{p} {b}" for p, b in v["unused"]) or "none"))
    print("orders to drop: " + (", ".join(f"l={l}" for l in v["drop"]) or "none"))
    print(f"total {res['timings']['seconds'].sum():.1f} s -> {res['report_html']}")
    return 0


def _report(args, make_report, cap_path, out, necessity):
    return make_report(cap_path, out=out, model=args.model, trust=args.trust or None,
                       ablation_molecules=None if args.ablation_molecules == 0 else args.ablation_molecules,
                       map_points=None if args.map_points == 0 else args.map_points, map_method=args.map_method,
                       map_layers=args.map_layers, compare=args.compare, threshold=args.threshold,
                       device=args.device or "auto", seed=args.seed, controls=args.controls,
                       command=_command(args), quantity=args.quantity, first_look=args.first_look or None,
                       recovery_steps=(args.recovery_steps or 200) if args.recovery else None,
                       recovery_lr=args.recovery_lr or 1e-3, necessity=necessity, seeds=args.seeds,
                       map_criterion=args.map_criterion)


def _necessity(items) -> list[tuple[str, str]]:
    """``--necessity l=1:CAPTURE`` (or ``l=1,2:CAPTURE``) -> [("l=1", "CAPTURE")]."""
    from ..errors import IrrepprobeError

    out = []
    for item in items or []:
        order, sep, path = item.partition(":")
        ls = order.removeprefix("l=").split(",")
        if not sep or not path or not order.startswith("l=") or not all(x.strip().isdigit() for x in ls):
            raise IrrepprobeError(f"--necessity takes ORDERS:CAPTURE, e.g. l=1:prune/pruned-seed0/capture; got {item!r}")
        out.append((order, path))
    return out


def cmd_dynamics(args) -> int:
    from pathlib import Path

    from ..study.dynamics import dynamics, kept_checkpoints

    at_least("--subset", args.subset, 0, "0 (all) or a positive number of molecules")
    if 0 < args.subset < 10:
        refuse(f"--subset must be 0 (all) or at least 10 molecules (the probes are 5-fold cross-validated), "
                f"got {args.subset}")
    at_least("--ablation-molecules", args.ablation_molecules, 0, "0 (all) or a positive number")
    at_least("--seed", args.seed, 0, "0 or a positive integer")
    check_device(args)
    kept_checkpoints(args.run)  # a run directory with kept checkpoints, before any work
    out = Path(args.out) if args.out else Path(args.run) / "dynamics"
    directory("--out", out)
    with undo_on_refusal(out):
        res = dynamics(args.run, out=out, subset=args.subset or None,
                       molecules=args.ablation_molecules or None, device=args.device, seed=args.seed,
                       command=_command(args))
    print(f"{res['table']['epoch'].nunique()} epochs -> {res['report_html']}")
    return 0


def cmd_experiment(args) -> int:
    from pathlib import Path

    from ..experiments import load_grid, run_experiment
    from ..report.experiment import experiment_report

    at_least("--jobs", args.jobs, 1)
    grid = load_grid(args.grid)
    out = Path(args.out or Path("experiments") / grid.name)
    directory("--out", out)
    if args.list:
        from ..experiments import state
        for r in grid.runs:
            print(f"{state(out / r.name):8s} {r.name}")
        return 0
    with undo_on_refusal(out):
        res = run_experiment(grid, out, jobs=args.jobs, executor=args.executor)
        md = experiment_report(res, out, grid.name, command=_command(args))
    done = len(res["runs"])
    print(f"{done}/{len(grid.runs)} runs done -> {md}")
    for line in res["failures"]:
        print(line)
    return 1 if res["failures"] else 0


def cmd_model(args) -> int:
    from ..models import build_model

    cfg = _config(args)
    if cfg is None:
        from ..models import preset

        cfg = preset("lee")
    print(build_model(cfg).summary())
    return 0


def cmd_presets(args) -> int:
    from ..models import PRESETS, build_model, num_parameters, preset

    for name in PRESETS:
        cfg = preset(name)
        m = cfg.model
        print(f"{name:<10} target={cfg.data.target:<8} ls={m.ls} mul={m.mul} layers={m.layers} "
              f"cutoff={m.cutoff}  params={num_parameters(build_model(cfg)):,}")
    return 0


def cmd_data(args) -> int:
    import time

    from ..data import TARGETS, load_qm9, target_values
    from ..errors import IrrepprobeError

    directory("--cache-dir", args.cache_dir)
    if args.action == "export":
        return _export(args)
    if args.path:
        raise IrrepprobeError(f"unexpected argument {args.path!r} (did you mean: irrepprobe data export {args.path})")
    given = [flag for flag, v in (("--split", args.split), ("--subset", args.subset), ("--checkpoint", args.checkpoint))
             if v is not None]
    if given:
        raise IrrepprobeError(f"{', '.join(given)}: only with export (irrepprobe data export OUT.xyz ...)")
    t0 = time.time()
    qm9 = load_qm9(args.cache_dir, rebuild=args.rebuild)
    print(f"QM9: {len(qm9):,} molecules, {qm9.species.numel():,} atoms, loaded in {time.time() - t0:.1f} s")
    print(f"{'target':<16}{'irreps':<12}{'unit':<14}{'mean':>12}{'std':>12}  description")
    for t in TARGETS.values():
        v = target_values(qm9, t.name)
        print(f"{t.name:<16}{t.irreps:<12}{t.unit:<14}{float(v[:, 0].mean()):>12.4f}{float(v[:, 0].std()):>12.4f}"
              f"  {t.description}")
    return 0


def _export(args) -> int:
    """QM9 (a split of the seed-0 80/10/10 split, or all of it) to extended XYZ with every target."""
    from ..data import load_qm9, make_split
    from ..data.structures import qm9_structures, write_extxyz
    from ..errors import IrrepprobeError

    from pathlib import Path

    if not args.path:
        raise IrrepprobeError("give the file to write: irrepprobe data export OUT.xyz [--split test] [--subset N]")
    if args.subset is not None and args.subset < 1:
        raise IrrepprobeError(f"--subset must be a positive number of molecules, got {args.subset}")
    args.split = args.split or "test"
    if args.split not in ("all", "train", "val", "test"):
        raise IrrepprobeError(f"unknown split {args.split!r}; valid: all, train, val, test")
    if args.checkpoint and args.split == "all":
        raise IrrepprobeError("with --checkpoint give --split train, val or test")
    if Path(args.path).is_dir():
        raise IrrepprobeError(f"{args.path} is a directory; give the file to write")
    split = None
    if args.checkpoint:  # the very molecules a model was trained, validated or tested on
        from ..train import load_checkpoint

        split = load_checkpoint(args.checkpoint)["split"]
    qm9 = load_qm9(args.cache_dir)
    if args.checkpoint:
        indices, source = split[args.split].tolist(), f"{args.checkpoint}:{args.split}"
    else:
        indices = range(len(qm9)) if args.split == "all" else make_split(len(qm9), seed=0)[args.split].tolist()
        source = f"qm9:{args.split}"
    if args.subset is not None and args.subset > len(indices):
        raise IrrepprobeError(f"--subset {args.subset} is more than the {len(indices)} molecules of the "
                              f"{args.split} split")
    indices = list(indices)[: args.subset]
    structures = qm9_structures(qm9, indices, source=source)
    with undo_on_refusal(args.path):
        path = write_extxyz(structures, args.path)
    print(f"wrote {len(structures)} QM9 molecules ({args.split} split) with {len(structures.labels)} labels "
          f"and per-atom charges -> {path}")
    return 0
