"""What every command checks before any work (ranges, directories, the device), and the undo of a refused
run: nothing it made is left behind."""
from __future__ import annotations

from contextlib import contextmanager


def refuse(message: str):
    from ..errors import IrrepprobeError

    raise IrrepprobeError(message)


def at_least(flag: str, value, low, what: str = "") -> None:
    """Refuse ``value`` below ``low`` (None passes: the option was not given)."""
    if value is not None and value < low:
        refuse(f"{flag} must be {what or f'at least {low}'}, got {value}")


def fraction(flag: str, value) -> None:
    if value is not None and not 0 < value < 1:
        refuse(f"{flag} must be a fraction between 0 and 1, got {value:g}")


def check_device(args) -> None:
    """--device cuda on a machine without one, a --cache-dir that is a file: refused before any work."""
    if getattr(args, "device", None) not in (None, "auto", "cpu"):
        from ..runtime import resolve_device

        resolve_device(args.device)
    directory("--cache-dir", getattr(args, "cache_dir", None))


def directory(flag: str, path) -> None:
    """An output directory that is a file already: refused before any work."""
    from pathlib import Path

    if path is not None and Path(path).exists() and not Path(path).is_dir():
        refuse(f"{flag} {path} is a file, not a directory")


def tree(path) -> set:
    """Every path under ``path`` (itself included), links not followed."""
    import os
    from pathlib import Path

    found = {Path(path)}
    if Path(path).is_dir() and not Path(path).is_symlink():
        for root, dirs, files in os.walk(path):
            found.update(Path(root) / n for n in dirs + files)
    return found


@contextmanager
def undo_on_refusal(*paths):
    """When the command refuses (an :class:`IrrepprobeError`, bad input found midway), remove what this run
    created under ``paths`` (and the parent directories it made for them), and nothing else: a path that
    did not exist goes entirely; in one that did, only the files and directories that were not there
    before. Interrupts and internal errors keep what was made, so that a rerun resumes."""
    import shutil
    from pathlib import Path

    from ..errors import IrrepprobeError

    before = {}
    for path in paths:
        if path is None:
            continue
        top = Path(path).absolute()
        while not top.parent.exists() and top.parent != top:  # the highest directory this run would make
            top = top.parent
        before[top] = tree(top) if top.exists() or top.is_symlink() else None
    try:
        yield
    except IrrepprobeError:
        for top, had in before.items():
            if had is None:
                if top.is_dir() and not top.is_symlink():
                    shutil.rmtree(top, ignore_errors=True)
                elif top.exists() or top.is_symlink():
                    top.unlink()
                continue
            for new in sorted(tree(top) - had, key=lambda q: len(q.parts)):  # outermost first
                if not (new.exists() or new.is_symlink()):
                    continue  # inside a directory already removed
                if new.is_dir() and not new.is_symlink():
                    shutil.rmtree(new, ignore_errors=True)
                else:
                    new.unlink()
        raise


def check_head(args, adapter) -> str | None:
    """The head (MACE) or fidelity (SevenNet) named by ``--head`` or ``--modality``, refused before the model
    loads when the flag is of another family."""
    if args.head is not None and args.modality is not None:
        refuse("give --head (a MACE head) or --modality (a SevenNet fidelity), not both")
    flag, head = ("head", args.head) if args.head is not None else ("modality", args.modality)
    if head is not None and adapter.head_flag != flag:
        what = {"head": "MACE multi-head", "modality": "SevenNet multi-fidelity"}[flag]
        refuse(f"--{flag} is for {what} models; this is a {adapter.name} model"
               + (f": use --{adapter.head_flag} NAME" if adapter.head_flag else ", which has no heads"))
    return head
