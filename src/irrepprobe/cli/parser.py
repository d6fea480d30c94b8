"""The ``irrepprobe`` argument parser: every subcommand, its options and its help."""
from __future__ import annotations

import argparse

from .commands import (cmd_capture, cmd_data, cmd_dynamics, cmd_evaluate, cmd_experiment, cmd_model, cmd_presets,
                       cmd_report, cmd_train)
from .pruning import cmd_prune
from .validation import cmd_validate


class Parser(argparse.ArgumentParser):
    """Bad arguments as one line (what is wrong, and where the help is), exit code 2: argparse's own error
    prints the whole usage first."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _with_parents(add_parser, parents):
    """Every subcommand also takes the options of ``parents`` (``--debug`` after the subcommand too)."""
    def add(*args, **kwargs):
        return add_parser(*args, parents=parents, **kwargs)
    return add


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    sp.add_argument("--format", default="auto", help="model family: auto, irrepprobe, sevenn, mace, nequip (NequIP and Allegro), so3lr, e3nn or one an installed package registers (default auto)")
    sp.add_argument("--data", help="qm9, qm9:SPLIT (the model's own split, or QM9's 80/10/10 one) or any file "
                                   "ASE reads (default qm9:test)")
    sp.add_argument("--split", help="with no --data: the QM9 split (train, val, test; default test)")
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
    sp.add_argument("--recovery-steps", type=int, metavar="N",
                    help="fine-tuning steps per order for --recovery (default 200)")
    sp.add_argument("--recovery-lr", type=float, help="fine-tuning learning rate for --recovery (default 1e-3)")
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
    sp.add_argument("--format", default="auto", help="model family: auto, irrepprobe, sevenn, mace, nequip or so3lr (default auto)")
    sp.add_argument("--trust", action="store_true", help="allow unpickling a third-party model file")
    sp.add_argument("--data", help="other families: the structures to fine-tune on, FILE or qm9[:split]")
    sp.add_argument("--subset", type=int, help="other families: the first N structures of --data")
    sp.add_argument("--target", metavar="KEY",
                    help="other families: the label of --data that is the model's energy (default: the one named "
                         "like the model's quantity, if any; without one, the original's own energies are distilled)")
    sp.add_argument("--steps", type=int,
                    help="other families: fine-tuning steps of the pruned model (default 200)")
    sp.add_argument("--md-steps", type=int,
                    help="other families: MD steps per round for the speed of the original and pruned files "
                         "through the family's own calculator (default 20; 0: none)")
    sp.add_argument("--head", metavar="NAME", help="other families: the head of a multi-head MACE model to "
                                                   "fine-tune and compare at (default: its only head, or the one "
                                                   "called default)")
    sp.add_argument("--modality", metavar="NAME", help="other families: the fidelity of a multi-fidelity SevenNet "
                                                       "model to fine-tune and compare at, e.g. PBE (needed when it "
                                                       "has several; the pruned file keeps every fidelity)")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--drop-l", help="orders to drop, e.g. 1,2")
    sp.add_argument("--channels", metavar="SPEC",
                    help="other families: prune channels of the hidden layers too: a fraction kept per block (0.5), a "
                         "count per block (32), counts per block (0e:64,1e:32,2e:16), or auto (with --speedup); the "
                         "channels kept are the most important (first-order change of energy and forces)")
    sp.add_argument("--speedup", type=float, metavar="X",
                    help="--channels auto: remove channels until a force evaluation needs X times fewer floating-point "
                         "operations (default 2)")
    sp.add_argument("--equal-channels", action="store_true",
                    help="the same channel count in every block of a layer (the smallest asked), as fast kernels "
                         "such as cuEquivariance want")
    sp.add_argument("--front", nargs="?", const="", metavar="SETTINGS",
                    help="other families: prune several cuts, each with --seeds, and plot error against MD steps/s: "
                         "whitespace-separated --channels SPECs, drop:SPEC also drops the highest order (default "
                         "'0.75 0.5 0.35 drop:1.0 drop:0.5')")
    sp.add_argument("--reference", metavar="MODEL",
                    help="--front: the family's official smaller model, measured beside the cuts (e.g. 7net-0 beside "
                         "7net-l3i5)")
    sp.add_argument("--auto", action="store_true",
                    help="drop the orders unused at every layer (with --recovery-steps: those dispensable after "
                         "fine-tuning with the order masked)")
    sp.add_argument("--recovery-steps", type=int, metavar="N",
                    help="--auto rests on recovery: fine-tune with each order masked for N steps")
    sp.add_argument("--seeds", type=int, help="seeds per variant (default 1); other families: fine-tuning seeds of "
                                              "the pruned model, with a t interval over them")
    sp.add_argument("--held-out", metavar="FILE",
                    help="other families: structures to compare on, other compositions or trajectories than --data "
                         "(default: the last 20%% of --data)")
    sp.add_argument("--validate", metavar="SUITES",
                    help="other families: then run irrepprobe validate on the original, the pruned model before "
                         "fine-tuning and each seed's (e.g. eos,stress,molecules; see validate --suite)")
    sp.add_argument("--no-scratch", action="store_true",
                    help="other families: leave out the control of the small architecture trained from fresh weights")
    sp.add_argument("--shift-references", action="store_true",
                    help="other families: when --target holds another energy reference than the model's, "
                         "subtract a fitted offset per element from it instead of refusing")
    sp.add_argument("--threshold", type=float,
                    help="our checkpoints: the utilisation below which --auto finds an order unused (default 0.05)")
    sp.add_argument("--ablation-molecules", type=int,
                    help="our checkpoints: molecules for ablation (default 1000; 0 = all)")
    sp.add_argument("--warm-start", action="store_true",
                    help="also train the pruned model from the full model's surviving weights")
    sp.add_argument("--out", help="default: prune/ beside the checkpoint")
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("validate", help="physics checks of potentials side by side: Delta test, stress, NVE, "
                                         "stability, phonons, molecules, MD speed")
    sp.add_argument("models", metavar="MODEL", nargs="+",
                    help="model files or SevenNet names, each optionally LABEL=PATH (the label names it in the report)")
    sp.add_argument("--format", default="auto", help="model family: auto, sevenn, mace, nequip, so3lr or irrepprobe")
    sp.add_argument("--trust", action="store_true", help="allow unpickling third-party model files")
    sp.add_argument("--suite", help="comma-separated checks (default all): eos, stress, nve, stability, phonons, "
                                    "molecules, speed")
    sp.add_argument("--elements", help="restrict the crystal checks to these elements, e.g. Si,Cu,Al")
    sp.add_argument("--nve-ps", type=float, help="NVE length in ps (default 2)")
    sp.add_argument("--nve-fs", type=float, help="NVE (and stability) timestep in fs (default 1)")
    sp.add_argument("--nve-systems", help="NVE cells, comma-separated from Si, Cu, NaCl, MgO, Al, Fe, W "
                                          "(default Si,NaCl; the first also for stability)")
    sp.add_argument("--stability-ps", type=float, help="high-temperature Langevin length in ps (default 0.5)")
    sp.add_argument("--stability-k", type=float, help="its temperature in K (default 1200)")
    sp.add_argument("--speed-sizes", help="atoms of the Si cells timed, e.g. 64,216,512 (the default)")
    sp.add_argument("--speed-repeats", type=int, help="interleaved rounds of the MD speed (default 3)")
    sp.add_argument("--qm9", type=int, help="QM9 test molecules scored (default 200)")
    sp.add_argument("--md-models", metavar="LABELS", help="run NVE and stability only for these models (default all)")
    sp.add_argument("--speed-models", metavar="LABELS", help="time only these models (default all)")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--out", default="validate", help="default: validate/")
    sp.set_defaults(func=cmd_validate)

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
    sp.add_argument("--split", help="with export: all, train, val or test (QM9's seed-0 80/10/10; default test)")
    sp.add_argument("--subset", type=int, help="with export: only the first N molecules")
    sp.add_argument("--checkpoint", metavar="CKPT",
                    help="with export: the split of this irrepprobe checkpoint instead of QM9's seed-0 split")
    sp.add_argument("--cache-dir")
    sp.add_argument("--rebuild", action="store_true")
    sp.set_defaults(func=cmd_data)
    return p
