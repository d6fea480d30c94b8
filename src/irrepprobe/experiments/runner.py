"""Run a grid: skip finished runs, resume interrupted ones, start new ones, then collect the tables."""
from __future__ import annotations

from pathlib import Path

from ..errors import IrrepprobeError
from .executors import run_local, run_submitit
from .grid import Grid
from .run import collect, state


def run_experiment(grid: Grid, out, jobs: int | None = None, executor: str | None = None,
                   log=print) -> dict:
    """Bring every run of ``grid`` under ``out`` to done. Returns ``collect``'s tables plus
    ``counts`` (runs done before, resumed, new) and ``failures`` (one line per failed run)."""
    out = Path(out)
    params = dict(grid.executor)
    name = executor or params.get("name", "local")
    jobs = jobs if jobs is not None else int(params.get("jobs", 1))
    if jobs < 1:
        raise IrrepprobeError(f"--jobs must be at least 1, got {jobs}")
    states = {r.name: state(out / r.name) for r in grid.runs}
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "partial", "new")}
    log(f"{grid.name}: {len(grid.runs)} runs: {counts['done']} done, {counts['partial']} to resume, "
        f"{counts['new']} new")
    todo = [r for r in grid.runs if states[r.name] != "done"]
    failures = []
    if todo:
        if name == "local":
            failures = run_local(todo, out, grid.measure, jobs, log)
        elif name == "submitit":
            failures = run_submitit(todo, out, grid.measure, params, log)
        else:
            raise IrrepprobeError(f"unknown executor {name!r}; valid: local, submitit")
    tables = collect(out, [r.name for r in grid.runs])
    return {**tables, "counts": counts, "failures": failures}
