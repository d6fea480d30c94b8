"""The ``irrepprobe`` command. Thin: parse, call the library, print. Bad input -> one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys


def _config(args):
    from .config import apply_overrides, load_config
    from .models import preset

    if args.config and args.preset:
        from .errors import IrrepprobeError

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
    from .errors import IrrepprobeError
    from .train import train

    cfg = _config(args)
    if cfg is None and not args.resume:
        raise IrrepprobeError("give a CONFIG file or --preset NAME (see: irrepprobe presets)")
    if cfg is not None and not args.resume:  # on resume the run's own saved config is used
        import yaml

        print("# resolved config")
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    train(cfg, args.out, resume=args.resume, progress=not args.no_progress and sys.stderr.isatty())
    return 0


def cmd_evaluate(args) -> int:
    from .train import evaluate

    df = evaluate(args.checkpoint, split=args.split, device=args.device or "auto",
                  batch_size=args.batch_size, cache_dir=args.cache_dir)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_capture(args) -> int:
    from pathlib import Path

    from .adapters import detect, get_adapter, load_model
    from .capture import capture, resolve_data
    from .errors import IrrepprobeError
    from .examples import example_checkpoint
    from .runtime import resolve_device

    source = args.model or str(example_checkpoint())
    if args.head is not None and args.modality is not None:
        raise IrrepprobeError("give --head (a MACE head) or --modality (a SevenNet fidelity), not both")
    flag, head = ("head", args.head) if args.head is not None else ("modality", args.modality)
    adapter = detect(source) if args.format == "auto" else get_adapter(args.format)
    if head is not None and adapter.head_flag != flag:  # before loading: a flag of another family
        what = {"head": "MACE multi-head", "modality": "SevenNet multi-fidelity"}[flag]
        raise IrrepprobeError(f"--{flag} is for {what} models; this is a {adapter.name} model"
                              + (f": use --{adapter.head_flag} NAME" if adapter.head_flag else ", which has no heads"))
    model = load_model(source, adapter.name, trust=args.trust, device=resolve_device(args.device or "auto"),
                       head=head)
    if args.format == "auto":
        print(f"model format: {model.adapter.name} (picked from {source}; --format to choose)")
    data = args.data or f"qm9:{args.split}"
    structures = resolve_data(data, model, args.subset, args.cache_dir)
    target = args.target or (model.quantity.name if model.quantity.name in structures.labels else None)
    out = args.out or _capture_dir(args.model, data)
    cap = capture(model, structures, args.points, out, args.batch_size, args.save_nodes, target=target,
                  trusted=args.trust, check_equivariance=args.check_equivariance)
    m = cap.meta
    print(f"captured {len(cap.points)} points over {m['n_molecules']} structures of {m['data']} with "
          f"{Path(m['model']).name} in {m['seconds']:.1f} s -> {cap.path}")
    print(m["model_summary"])
    print(f"own quantity: {m['quantity']['name']} ({m['quantity']['unit']}); "
          + (f"label {target}: errors stored" if target else "no label of it in the data: predictions only"))
    for name, why in m["skipped"].items():
        print(f"skipped {name}: {why}")
    print(cap.summary.drop(columns=["mean_sq_norm"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    from .capture import equivariance_line

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
    from .report import make_report

    cap_path = args.capture
    print(f"report on {cap_path}")
    res = make_report(cap_path, out=args.out, model=args.model, trust=args.trust or None,
                      ablation_molecules=None if args.ablation_molecules == 0 else args.ablation_molecules,
                      map_points=None if args.map_points == 0 else args.map_points, map_method=args.map_method,
                      map_layers=args.map_layers, compare=args.compare, threshold=args.threshold,
                      device=args.device or "auto", seed=args.seed, controls=args.controls,
                      command=_command(args), quantity=args.quantity, first_look=args.first_look or None,
                      recovery_steps=args.recovery_steps if args.recovery else None, recovery_lr=args.recovery_lr,
                      necessity=_necessity(args.necessity), seeds=args.seeds, map_criterion=args.map_criterion)
    v = res["verdict"]
    print("unused blocks: " + (", ".join(f"{p} {b}" for p, b in v["unused"]) or "none"))
    print("orders to drop: " + (", ".join(f"l={l}" for l in v["drop"]) or "none"))
    print(f"total {res['timings']['seconds'].sum():.1f} s -> {res['report_html']}")
    return 0


def _necessity(items) -> list[tuple[str, str]]:
    """``--necessity l=1:CAPTURE`` (or ``l=1,2:CAPTURE``) -> [("l=1", "CAPTURE")]."""
    from .errors import IrrepprobeError

    out = []
    for item in items or []:
        order, sep, path = item.partition(":")
        ls = order.removeprefix("l=").split(",")
        if not sep or not path or not order.startswith("l=") or not all(x.strip().isdigit() for x in ls):
            raise IrrepprobeError(f"--necessity takes ORDERS:CAPTURE, e.g. l=1:prune/pruned-seed0/capture; got {item!r}")
        out.append((order, path))
    return out


def _prune_family(args, adapter, drop) -> int:
    """prune for SevenNet, MACE, NequIP: surgery, fine-tuning on --data, the family's own file."""
    from pathlib import Path

    from .capture import resolve_data
    from .errors import IrrepprobeError
    from .adapters import load_model
    from .prune.family import check_drop, family_report, prune_family
    from .runtime import resolve_device

    if not args.data:
        raise IrrepprobeError(f"--data FILE|qm9[:split] is needed to fine-tune a {adapter.name} model (its labels "
                              "where it has them, else the original's own energies and forces)")
    model = load_model(args.checkpoint, adapter.name, trust=args.trust, device=resolve_device(args.device or "auto"))
    if drop is not None:
        drop = check_drop(model, drop)  # before any work
    structures = resolve_data(args.data, model, args.subset)
    if args.target and args.target not in structures.labels:
        raise IrrepprobeError(f"--target {args.target!r} is not a label of {args.data}; its labels: "
                              + (", ".join(sorted(structures.labels)) or "none"))
    label = args.target or (model.quantity.name if model.quantity.name in structures.labels else None)
    out = Path(args.out or f"prune-{Path(args.checkpoint).stem}")
    if drop is None:
        from .metrics import dispensable, recovery

        table = recovery(model, structures, label=label, steps=args.steps, out=out / "recovery")
        found = dispensable(table)
        print("orders dispensable after fine-tuning with the order masked: "
              + (", ".join(f"l={l}" for l in found) or "none"))
        drop = list(found)
        while drop and model.adapter.why_not_without(model, drop):  # e.g. SevenNet: only the highest orders
            drop = drop[1:]
        if not drop:
            print("nothing to prune")
            return 0
    res = prune_family(model, structures, drop, out, steps=args.steps, label=label, md_steps=args.md_steps)
    md = family_report(res, model, args.data, command=_command(args))
    print(res["table"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"pruned model: {res['pruned']} -> {md}")
    return 0


def cmd_dynamics(args) -> int:
    from .report.dynamics import dynamics

    res = dynamics(args.run, out=args.out, subset=args.subset or None,
                   molecules=args.ablation_molecules or None, device=args.device, seed=args.seed,
                   command=_command(args))
    print(f"{res['table']['epoch'].nunique()} epochs -> {res['report_html']}")
    return 0


def cmd_prune(args) -> int:
    from pathlib import Path

    from .errors import IrrepprobeError
    from .prune import prune
    from .report.compare import prune_report

    if args.drop_l and args.auto:
        raise IrrepprobeError("give --drop-l L[,L...] or --auto, not both")
    if not args.drop_l and not args.auto:
        raise IrrepprobeError("give --drop-l L[,L...] (orders to drop) or --auto (the orders found unused)")
    drop = None
    if args.drop_l:
        try:
            drop = [int(x) for x in args.drop_l.split(",") if x.strip()]
        except ValueError:
            raise IrrepprobeError(f"--drop-l takes orders like 1,2; got {args.drop_l!r}") from None
    from .adapters import detect, get_adapter

    adapter = detect(args.checkpoint) if args.format == "auto" else get_adapter(args.format)
    if adapter.name != "irrepprobe":
        return _prune_family(args, adapter, drop)
    if args.data or args.target:
        raise IrrepprobeError("--data and --target are for other families: our models are retrained on their own "
                              "QM9 config")
    out = Path(args.checkpoint).parent / "prune" if not args.out else Path(args.out)
    res = prune(args.checkpoint, out, drop=drop, seeds=args.seeds, threshold=args.threshold,
                molecules=args.ablation_molecules or None, warm=args.warm_start,
                recovery_steps=args.recovery_steps)
    md = prune_report(res, out, Path(args.checkpoint).name, args.threshold,
                      command=_command(args))
    print(res["runs"][["variant", "seed", "ls", "params", "test_mae", "knn_r2_target"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> {md}")
    return 0


def cmd_experiment(args) -> int:
    from pathlib import Path

    from .experiments import load_grid, run_experiment
    from .report.experiment import experiment_report

    grid = load_grid(args.grid)
    out = Path(args.out or Path("experiments") / grid.name)
    if args.list:
        from .experiments import state
        for r in grid.runs:
            print(f"{state(out / r.name):8s} {r.name}")
        return 0
    res = run_experiment(grid, out, jobs=args.jobs, executor=args.executor)
    md = experiment_report(res, out, grid.name, command=_command(args))
    done = len(res["runs"])
    print(f"{done}/{len(grid.runs)} runs done -> {md}")
    for line in res["failures"]:
        print(line)
    return 1 if res["failures"] else 0


def cmd_model(args) -> int:
    from .models import build_model

    cfg = _config(args)
    if cfg is None:
        from .models import preset

        cfg = preset("lee")
    print(build_model(cfg).summary())
    return 0


def cmd_presets(args) -> int:
    from .models import PRESETS, build_model, num_parameters, preset

    for name in PRESETS:
        cfg = preset(name)
        m = cfg.model
        print(f"{name:<10} target={cfg.data.target:<8} ls={m.ls} mul={m.mul} layers={m.layers} "
              f"cutoff={m.cutoff}  params={num_parameters(build_model(cfg)):,}")
    return 0


def cmd_data(args) -> int:
    import time

    from .data import TARGETS, load_qm9, target_values
    from .errors import IrrepprobeError

    if args.action == "export":
        return _export(args)
    if args.path:
        raise IrrepprobeError(f"unexpected argument {args.path!r} (did you mean: irrepprobe data export {args.path})")
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
    from .data import load_qm9, make_split
    from .data.structures import qm9_structures, write_extxyz
    from .errors import IrrepprobeError

    if not args.path:
        raise IrrepprobeError("give the file to write: irrepprobe data export OUT.xyz [--split test] [--subset N]")
    if args.subset is not None and args.subset < 1:
        raise IrrepprobeError(f"--subset must be a positive number of molecules, got {args.subset}")
    qm9 = load_qm9(args.cache_dir)
    if args.split not in ("all", "train", "val", "test"):
        raise IrrepprobeError(f"unknown split {args.split!r}; valid: all, train, val, test")
    if args.checkpoint:  # the very molecules a model was trained, validated or tested on
        from .train import load_checkpoint

        split = load_checkpoint(args.checkpoint)["split"]
        if args.split == "all":
            raise IrrepprobeError("with --checkpoint give --split train, val or test")
        indices, source = split[args.split].tolist(), f"{args.checkpoint}:{args.split}"
    else:
        indices = range(len(qm9)) if args.split == "all" else make_split(len(qm9), seed=0)[args.split].tolist()
        source = f"qm9:{args.split}"
    indices = list(indices)[: args.subset]
    structures = qm9_structures(qm9, indices, source=source)
    path = write_extxyz(structures, args.path)
    print(f"wrote {len(structures)} QM9 molecules ({args.split} split) with {len(structures.labels)} labels "
          f"and per-atom charges -> {path}")
    return 0


def _with_parents(add_parser, parents):
    """Every subcommand also takes the options of ``parents`` (``--debug`` after the subcommand too)."""
    def add(*args, **kwargs):
        return add_parser(*args, parents=parents, **kwargs)
    return add


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="irrepprobe",
        description="Which irreducible representations does a trained equivariant network use?")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks instead of one-line errors")
    sub.add_parser = _with_parents(sub.add_parser, [debug])

    def config_args(sp):
        sp.add_argument("config", nargs="?", help="YAML config with sections data, model, train")
        sp.add_argument("--preset", help="start from a named preset (irrepprobe presets)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config field, e.g. --set model.ls=[0,3,4] (repeatable)")

    sp = sub.add_parser("train", help="train an equivariant model on QM9")
    config_args(sp)
    sp.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    sp.add_argument("--cache-dir", help="QM9 tensor cache (default $IRREPPROBE_CACHE or ~/.cache/irrepprobe)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="errors of a checkpoint on one of its splits")
    sp.add_argument("checkpoint")
    sp.add_argument("--split", default="test", choices=["train", "val", "test"])
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--batch-size", type=int, default=128)
    sp.add_argument("--cache-dir")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("capture", help="per-irrep activations of a model over structures")
    sp.add_argument("model", nargs="?",
                    help="a model file, a name its family resolves (e.g. 7net-0) or a factory pkg.module:fn "
                         "(default: the example checkpoint shipped with irrepprobe)")
    sp.add_argument("--format", default="auto", help="model family: auto, irrepprobe, sevenn, mace, nequip (NequIP and Allegro) or e3nn (default auto)")
    sp.add_argument("--data", help="qm9, qm9:SPLIT (the model's own split, or QM9's 80/10/10 one) or any file "
                                   "ASE reads (default qm9:test)")
    sp.add_argument("--split", default="test", help="with no --data: the QM9 split (train, val, test)")
    sp.add_argument("--subset", type=int, help="only the first N structures")
    sp.add_argument("--target", help="the label holding the model's own quantity (default: the model's "
                                     "target when the data has it; otherwise predictions only)")
    sp.add_argument("--points", "--layers", dest="points", nargs="+", metavar="GLOB",
                    help="point name patterns, e.g. 'layers.*' or '*' (default: the adapter's choice)")
    sp.add_argument("--trust", action="store_true",
                    help="allow loading a model file that must be unpickled (it can run code)")
    sp.add_argument("--head", metavar="NAME", help="the head of a multi-head MACE model (default: its only "
                                                   "head, or the one called default)")
    sp.add_argument("--modality", metavar="NAME", help="the fidelity of a multi-fidelity SevenNet model, e.g. "
                                                       "PBE (needed when it has several)")
    sp.add_argument("--check-equivariance", type=int, default=16, metavar="N",
                    help="after the capture, rerun the first N structures randomly rotated and check that the "
                         "model is equivariant (equivariance.csv; default 16, 0 to skip)")
    sp.add_argument("--out", help="capture directory (default: beside the model file, or capture-NAME-DATA)")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--save-nodes", action="store_true", help="also write raw per-atom blocks in shards")
    sp.add_argument("--cache-dir")
    sp.set_defaults(func=cmd_capture)

    sp = sub.add_parser("report", help="metrics, figures and a verdict from a capture")
    sp.add_argument("capture", help="capture directory (from irrepprobe capture)")
    sp.add_argument("--out", help="report directory (default CAPTURE/report)")
    sp.add_argument("--model", "--checkpoint", dest="model",
                    help="the captured model file, if it has moved since the capture")
    sp.add_argument("--trust", action="store_true",
                    help="allow unpickling the model file (a capture made with --trust already allows its own file)")
    sp.add_argument("--threshold", type=float, default=0.05,
                    help="a block is unused when the upper end of its scale-free utilisation interval is below "
                         "this fraction under every intervention")
    sp.add_argument("--ablation-molecules", type=int, default=1000,
                    help="molecules for ablation and attribution (first N captured; 0 = all)")
    sp.add_argument("--map-points", type=int, default=2000, help="molecules per latent map (0 = all)")
    sp.add_argument("--map-method", default="umap", choices=["umap", "phate", "pca"])
    sp.add_argument("--map-layers", nargs="+", metavar="POINT", help="points to map (default: last layer)")
    sp.add_argument("--map-criterion", action="store_true",
                    help="also score every block's 2-D map (raw components and invariants, by --map-method) "
                         "against permuted targets, the untrained initialisations and composition (Lee et al.'s "
                         "criterion, measured), and set it beside dependence and recovery")
    sp.add_argument("--compare", metavar="CAPTURE", help="another model's capture for a CKA comparison")
    sp.add_argument("--controls", type=int, default=5,
                    help="untrained initialisations the probes are compared with (default 5)")
    sp.add_argument("--quantity", default="both", choices=["energy", "forces", "both"],
                    help="what ablation scores: the model's energy (its own quantity), its forces, or both "
                         "(default; forces only where the family computes them)")
    sp.add_argument("--first-look", type=int, default=64, metavar="N",
                    help="sequential ablation: stop adding structures to an ablation whose interval is already "
                         "clearly on one side of the threshold, looking at N structures and every doubling "
                         "(default 64; 0: every ablation on every structure)")
    sp.add_argument("--seeds", nargs="+", metavar="CAPTURE",
                    help="captures of other training runs of the same configuration over the same structures: "
                         "the spread of utilisation across seeds, beside this model's within-model intervals")
    sp.add_argument("--recovery", action="store_true",
                    help="also fine-tune the model with each order masked (and, as a control, unmasked) and "
                         "score what damage remains on held-out structures: whether the architecture needs the "
                         "order, not only this checkpoint; the verdict then rests on it")
    sp.add_argument("--recovery-steps", type=int, default=200, metavar="N",
                    help="fine-tuning steps per order for --recovery (default 200)")
    sp.add_argument("--recovery-lr", type=float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    sp.add_argument("--necessity", action="append", metavar="ORDERS:CAPTURE",
                    help="the capture of a model trained from scratch without the orders (e.g. "
                         "l=1:prune/pruned-seed0/capture), over the same labelled structures: the necessity leg")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("dynamics", help="utilisation and probe selectivity per block over a run's kept checkpoints")
    sp.add_argument("run", help="a training run directory trained with train.keep_epochs")
    sp.add_argument("--out", help="output directory (default RUN/dynamics)")
    sp.add_argument("--subset", type=int, default=500, help="test molecules captured per epoch (0 = all)")
    sp.add_argument("--ablation-molecules", type=int, default=200,
                    help="molecules for ablation (first N captured; 0 = all)")
    sp.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_dynamics)

    sp = sub.add_parser("prune", help="drop orders: retrain ours; rebuild, fine-tune and write back any other family")
    sp.add_argument("checkpoint", metavar="MODEL", help="our checkpoint, or a SevenNet, MACE or NequIP model file (or a "
                                                        "SevenNet name)")
    sp.add_argument("--format", default="auto", help="model family: auto, irrepprobe, sevenn, mace or nequip (default auto)")
    sp.add_argument("--trust", action="store_true", help="allow unpickling a third-party model file")
    sp.add_argument("--data", help="other families: the structures to fine-tune on, FILE or qm9[:split]")
    sp.add_argument("--subset", type=int, help="other families: the first N structures of --data")
    sp.add_argument("--target", metavar="KEY",
                    help="other families: the label of --data that is the model's energy (default: the one named "
                         "like the model's quantity, if any; without one, the original's own energies are distilled)")
    sp.add_argument("--steps", type=int, default=200,
                    help="other families: fine-tuning steps of the pruned model (default 200)")
    sp.add_argument("--md-steps", type=int, default=20,
                    help="other families: MD steps per round for the speed of the original and pruned files "
                         "through the family's own calculator (default 20; 0: none)")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--drop-l", help="orders to drop, e.g. 1,2")
    sp.add_argument("--auto", action="store_true",
                    help="drop the orders unused at every layer (with --recovery-steps: those dispensable after "
                         "fine-tuning with the order masked)")
    sp.add_argument("--recovery-steps", type=int, metavar="N",
                    help="--auto rests on recovery: fine-tune with each order masked for N steps")
    sp.add_argument("--seeds", type=int, default=1, help="seeds per variant (default 1)")
    sp.add_argument("--threshold", type=float, default=0.05)
    sp.add_argument("--ablation-molecules", type=int, default=1000)
    sp.add_argument("--warm-start", action="store_true",
                    help="also train the pruned model from the full model's surviving weights")
    sp.add_argument("--out", help="default: prune/ beside the checkpoint")
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("experiment", help="a grid of configs x seeds: resumable runs and one report")
    sp.add_argument("grid", help="the grid YAML (configs, grid, seeds, measure, executor)")
    sp.add_argument("--out", help="default: experiments/<grid name>")
    sp.add_argument("--jobs", type=int, help="runs at a time with the local executor (default: the grid's, 1)")
    sp.add_argument("--executor", choices=["local", "submitit"], help="default: the grid's, local")
    sp.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    sp.set_defaults(func=cmd_experiment)

    sp = sub.add_parser("model", help="print a model's layers, irreps and parameter counts")
    config_args(sp)
    sp.set_defaults(func=cmd_model)

    sp = sub.add_parser("presets", help="list the named presets")
    sp.set_defaults(func=cmd_presets)

    sp = sub.add_parser("data", help="build or load the QM9 cache and list the targets; export QM9 to extxyz")
    sp.add_argument("action", nargs="?", choices=["export"], help="export: write QM9 molecules to an extxyz file")
    sp.add_argument("path", nargs="?", help="with export: the file to write")
    sp.add_argument("--split", default="test", help="with export: all, train, val or test (QM9's seed-0 80/10/10)")
    sp.add_argument("--subset", type=int, help="with export: only the first N molecules")
    sp.add_argument("--checkpoint", metavar="CKPT",
                    help="with export: the split of this irrepprobe checkpoint instead of QM9's seed-0 split")
    sp.add_argument("--cache-dir")
    sp.add_argument("--rebuild", action="store_true")
    sp.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports that state their command
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .errors import IrrepprobeError

    try:
        return args.func(args)
    except IrrepprobeError as e:
        if args.debug:
            raise
        print(f"irrepprobe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irrepprobe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal failure: still one line unless --debug
        if args.debug or os.environ.get("IRREPPROBE_DEBUG"):
            raise
        print(f"irrepprobe: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
