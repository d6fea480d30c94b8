"""Experiment grids: configurations x seeds, each run resumable, executed locally or with submitit,
summarised in one report."""
from .grid import Grid, Run, load_grid, parse_grid
from .run import collect, measure, run_one, state, train_run
from .runner import run_experiment

__all__ = ["Grid", "Run", "collect", "load_grid", "measure", "parse_grid", "run_experiment", "run_one",
           "state", "train_run"]
