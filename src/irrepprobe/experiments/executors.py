"""Where the runs of a grid execute: ``local`` (one after another, or ``jobs`` processes at a time,
each with its share of the CPU threads) or ``submitit`` (SLURM; ``cluster: local`` runs the same
path on this machine). A run that fails is reported in one line; the others go on."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ..config import Config
from ..errors import IrrepprobeError
from .run import run_one


def _work(config: dict, out: str, measure_opts: dict, threads: int | None = None,
          distributed: bool = False, log=None) -> dict | None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    config = Config.from_dict(config)
    if distributed:  # one task per GPU: torchrun's variables from SLURM's; rank 0 then measures
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if env.rank > 0:
            from .run import train_run

            train_run(config, Path(out), log=lambda *a: None)
            return None
    return run_one(config, out, measure_opts, log=log or (lambda m: print(m, flush=True)))


def _failed(name: str, e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{name}: failed: {type(e).__name__}: {text[0] if text else ''}"


def _gather(jobs, log) -> list[str]:
    """Wait for each ``(run, result)`` in turn (``result()`` runs or joins it); one line per failure."""
    failures = []
    for r, result in jobs:
        try:
            result()
        except Exception as e:  # noqa: BLE001 - one bad run must not stop the grid
            failures.append(_failed(r.name, e))
            log(failures[-1])
    return failures


def run_local(runs, out: Path, measure_opts: dict, jobs: int = 1, log=print) -> list[str]:
    """Run ``runs`` here; returns one line per failed run."""
    if jobs <= 1:  # a generator: each run starts only when the previous one is done
        return _gather(((r, partial(_work, r.config.to_dict(), str(out / r.name), measure_opts, log=log))
                        for r in runs), log)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [(r, pool.submit(_work, r.config.to_dict(), str(out / r.name), measure_opts, threads).result)
                   for r in runs]
        return _gather(futures, log)


def run_submitit(runs, out: Path, measure_opts: dict, params: dict, log=print) -> list[str]:
    """Submit one job per run with ``submitit`` and wait for them. ``params`` go to
    ``AutoExecutor.update_parameters`` (e.g. ``slurm_partition``, ``timeout_min``, ``gpus_per_node``);
    ``cluster`` (e.g. ``local``) picks submitit's executor; ``tasks_per_node`` > 1 trains with DDP."""
    try:
        import submitit
    except ImportError:
        raise IrrepprobeError("the submitit executor needs submitit: pip install 'irrepprobe[slurm]'") from None
    params = dict(params)
    params.pop("name", None)
    params.pop("jobs", None)
    cluster = params.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster=cluster)
    try:
        executor.update_parameters(**params)
    except (TypeError, ValueError) as e:
        raise IrrepprobeError(f"bad submitit executor parameters: {str(e).splitlines()[0]}") from None
    distributed = int(params.get("tasks_per_node", 1)) > 1
    jobs = [(r, executor.submit(_work, r.config.to_dict(), str(out / r.name), measure_opts, None, distributed))
            for r in runs]
    log(f"submitted {len(jobs)} jobs ({executor.cluster}); logs in {out / 'submitit'}")
    return _gather(((r, job.result) for r, job in jobs), log)
