"""An experiment grid from YAML: named configurations x a product of overrides x seeds.

    name: lee-u0
    base: lee                    # a preset name, or a config mapping {data:, model:, train:}
    set: {data.subset: 3000, train.epochs: 12}   # overrides for every run
    configs:                     # optional named variants, each a preset and/or overrides
      - {name: L1, preset: miller-l1}
      - {name: L0, preset: miller-l0, set: {model.mul: 52}}
    grid: {model.ls: [[0, 1, 2], [0, 3, 4]]}     # optional: the product of these values
    seeds: 3                     # a count (seeds 0..2) or a list
    measure: {ablation_molecules: 500, capture_subset: null}
    executor: {name: local, jobs: 1}             # or name: submitit with SLURM parameters

A run is named ``<config>/<key=value...>/seed<k>`` and lives in that directory under the output."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..config import Config, apply_overrides
from ..errors import IrrepprobeError
from ..models import preset

KEYS = {"name", "base", "set", "configs", "grid", "seeds", "measure", "executor"}
MEASURE = {"ablation_molecules": 1000, "capture_subset": None, "knn_k": 10}


@dataclass
class Run:
    config_name: str  # the named variant and the grid values, without the seed
    seed: int
    config: Config

    @property
    def name(self) -> str:
        return f"{self.config_name}/seed{self.seed}"


@dataclass
class Grid:
    name: str
    runs: list[Run]
    measure: dict[str, Any] = field(default_factory=lambda: dict(MEASURE))
    executor: dict[str, Any] = field(default_factory=lambda: {"name": "local", "jobs": 1})


def _flow(value) -> str:
    """``value`` as one line of YAML, e.g. ``[0, 1, 2]`` or ``{0: 16, 1: 8}``."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _slug(value) -> str:
    text = _flow(value)
    return re.sub(r"[^A-Za-z0-9.,_-]+", "", text.replace(", ", ",")) or "x"


def _base(spec, where: str) -> Config:
    if spec is None:
        return Config()
    if isinstance(spec, str):
        return preset(spec)
    if isinstance(spec, dict):
        return Config.from_dict(spec)
    raise IrrepprobeError(f"{where}: expected a preset name or a config mapping")


def _overrides(mapping, where: str) -> list[str]:
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise IrrepprobeError(f"{where}: expected a mapping of section.key: value")
    return [f"{k}={_flow(v)}" for k, v in mapping.items()]


def parse_grid(raw: dict, default_name: str = "experiment") -> Grid:
    if not isinstance(raw, dict):
        raise IrrepprobeError("a grid file must be a mapping with keys " + ", ".join(sorted(KEYS)))
    unknown = set(raw) - KEYS
    if unknown:
        raise IrrepprobeError(f"unknown grid key {sorted(unknown)[0]!r}; valid: {', '.join(sorted(KEYS))}")
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)
            and len(set(seeds)) == len(seeds)):
        raise IrrepprobeError("grid seeds: expected a positive count or a list of distinct integers")
    variants = raw.get("configs") or [{"name": None}]
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise IrrepprobeError("grid configs: expected a list of mappings with name, preset and/or set")
    names = [v.get("name") for v in variants]
    if len(variants) > 1 and (None in names or len(set(names)) != len(names)):
        raise IrrepprobeError("grid configs: every config needs a distinct name")
    axes = raw.get("grid") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise IrrepprobeError("grid: expected a mapping of section.key: [values...]")
    measure = dict(MEASURE)
    extra = raw.get("measure") or {}
    if not isinstance(extra, dict) or set(extra) - set(MEASURE):
        raise IrrepprobeError(f"grid measure: valid keys are {', '.join(MEASURE)}")
    measure.update(extra)
    executor = {"name": "local", "jobs": 1, **(raw.get("executor") or {})}
    if executor["name"] not in ("local", "submitit"):
        raise IrrepprobeError("grid executor name: expected 'local' or 'submitit'")

    runs = []
    for variant in variants:
        unknown = set(variant) - {"name", "preset", "set"}
        if unknown:
            raise IrrepprobeError(f"grid config {variant.get('name')!r}: unknown key {sorted(unknown)[0]!r}")
        for values in itertools.product(*axes.values()):
            config = _base(variant.get("preset") or raw.get("base"), "grid base")
            point = dict(zip(axes, values))
            apply_overrides(config, _overrides(raw.get("set"), "grid set")
                            + _overrides(variant.get("set"), f"grid config {variant.get('name')!r}")
                            + _overrides(point, "grid"))
            parts = [str(variant["name"])] if variant.get("name") is not None else []
            parts += [f"{k.split('.')[-1]}={_slug(v)}" for k, v in point.items()]
            config_name = "-".join(parts) or "run"
            for seed in seeds:
                c = Config.from_dict(config.to_dict())
                c.train.seed = seed
                runs.append(Run(config_name, seed, c))
    # seed-major: a stopped experiment has every configuration at its first seeds, not some at all
    runs.sort(key=lambda r: seeds.index(r.seed))
    return Grid(str(raw.get("name") or default_name), runs, measure, executor)


def load_grid(path) -> Grid:
    from pathlib import Path

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IrrepprobeError(f"grid file not found: {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise IrrepprobeError(f"cannot read grid {path}: {str(e).splitlines()[0]}") from None
    return parse_grid(raw, Path(path).stem)
