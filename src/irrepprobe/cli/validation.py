"""``irrepprobe validate``: its options checked before any model is loaded, then the run and its report."""
from __future__ import annotations

from .checks import at_least, check_device, directory, refuse, undo_on_refusal
from .commands import _command


def _labels(text):
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def cmd_validate(args) -> int:
    from pathlib import Path

    from ..report.validate import validate_report
    from ..validate import parse_elements, parse_suites, validate
    from ..validate.calculators import parse_spec
    from ..validate.dynamics import CELLS

    suites = parse_suites(args.suite)
    elements = parse_elements(args.elements)
    at_least("--nve-ps", args.nve_ps, 0.01, "at least 0.01 ps")
    at_least("--nve-fs", args.nve_fs, 0.1, "at least 0.1 fs")
    at_least("--stability-ps", args.stability_ps, 0.01, "at least 0.01 ps")
    at_least("--stability-k", args.stability_k, 1, "a temperature in K")
    at_least("--speed-repeats", args.speed_repeats, 1)
    at_least("--qm9", args.qm9, 2, "at least 2 molecules")
    settings = {k: v for k, v in (("nve_ps", args.nve_ps), ("nve_fs", args.nve_fs), ("stability_ps", args.stability_ps),
                                  ("stability_k", args.stability_k), ("speed_repeats", args.speed_repeats),
                                  ("qm9", args.qm9)) if v is not None}
    if args.nve_systems:
        systems = tuple(s.strip() for s in args.nve_systems.split(",") if s.strip())
        bad = [s for s in systems if s not in CELLS]
        if bad or not systems:
            refuse(f"--nve-systems takes cells from {', '.join(CELLS)}; got {args.nve_systems!r}")
        settings["nve_systems"] = systems
    if args.speed_sizes:
        try:
            sizes = tuple(int(x) for x in args.speed_sizes.split(",") if x.strip())
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            refuse(f"--speed-sizes takes numbers of atoms like 64,216,512; got {args.speed_sizes!r}")
        settings["speed_sizes"] = sizes
    for spec in args.models:
        label, path = parse_spec(spec)
        if not Path(path).exists() and ("/" in path or Path(path).suffix):
            refuse(f"{path}: no such model file")
    directory("--out", args.out)
    check_device(args)
    from ..runtime import resolve_device

    out = Path(args.out)
    with undo_on_refusal(out):
        res = validate(args.models, out, fmt=args.format, trust=args.trust, suites=suites, elements=elements,
                       device=str(resolve_device(args.device or "cpu")), settings=settings,
                       md_models=_labels(args.md_models), speed_models=_labels(args.speed_models))
        md = validate_report(res, out, command=_command(args))
    from ..report.validate import summary_lines

    for line in summary_lines(res):
        print("- " + line.replace("**", ""))
    print(f"-> {md}")
    return 0
