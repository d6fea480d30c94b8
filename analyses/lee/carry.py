"""Carry unfinished runs across sessions. experiments/ is not committed and a session's processes end with
it, so a run that needs more than one session copies its checkpoints (last.pt, best.pt, the kept epochs,
config.yaml, metrics.csv; a few MB a run) into a committed folder under analyses/lee/, and the next session
restores the run from there when its machine has no directory for it. It may copy while the run trains: each
file is written atomically, resuming reads last.pt (metrics.csv is rewritten from it), and a copy during which
last.pt changed (best.pt could then be an epoch ahead of it) is taken again."""
from __future__ import annotations

import shutil
from pathlib import Path

from irrepprobe.experiments.run import state

KEEP = ("last.pt", "best.pt", "config.yaml", "metrics.csv", "epochs")


def restore(runs: Path, saved: Path, name: str) -> None:
    """Copy the saved state of run ``name`` into ``runs`` unless this machine has the run already."""
    src, dst = saved / name, runs / name
    if (src / "last.pt").exists() and state(dst) == "new":
        shutil.copytree(src, dst, dirs_exist_ok=True)
        print(f"{name}: restored from {src}", flush=True)


def save(runs: Path, saved: Path, names: list[str], done: set[str] = frozenset()) -> None:
    """Copy each run's checkpoints into ``saved`` until it is in ``done`` (its row is in the committed table),
    then drop them. A run finished here but not yet in the table is saved too: restored, it stops at once
    (the stopping rule replays its history) and is measured again, so a cut-off session cannot lose it."""
    for name in names:
        src, dst = runs / name, saved / name
        if name in done:
            shutil.rmtree(dst, ignore_errors=True)
        elif (src / "last.pt").exists():
            tmp = dst.with_name(dst.name + ".tmp")  # the old state stays whole until the new one is
            for _ in range(5):
                before = (src / "last.pt").stat().st_mtime_ns
                _copy(src, tmp)
                if (src / "last.pt").stat().st_mtime_ns == before:
                    break
            else:
                print(f"{name}: not saved, last.pt kept changing", flush=True)
                continue
            shutil.rmtree(dst, ignore_errors=True)
            tmp.rename(dst)
            print(f"{name}: saved to {dst}", flush=True)


def _copy(src: Path, tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in KEEP:
        if (src / item).is_dir():
            shutil.copytree(src / item, tmp / item)
        elif (src / item).exists():
            shutil.copy2(src / item, tmp / item)
