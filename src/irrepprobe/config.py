"""Run configuration: three sections (data, model, train), read from YAML, presets and ``--set``
overrides, validated with one clear message per mistake, and stored in checkpoints as plain JSON."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import IrrepprobeError


@dataclass
class DataConfig:
    target: str = "u0_atom"
    subset: int | None = None  # use only this many molecules (seeded random choice)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # fractions or counts
    split_seed: int = 0
    # train on only the first n molecules of the train split's seeded order: sizes of a learning curve are
    # nested, and validation and test molecules do not change with n
    train_size: int | None = None
    cache_dir: str | None = None


@dataclass
class ModelConfig:
    ls: list[int] = field(default_factory=lambda: [0, 1, 2])  # spherical-harmonic orders, any set with 0
    mul: int | dict[int, int] = 16  # channels per order: one int, or {l: mul}
    parity: str = "natural"  # "natural": parity (-1)^l only; "both": even and odd copies of every l
    layers: int = 3
    cutoff: float = 5.0  # Angstrom
    n_basis: int = 8
    radial_hidden: int = 32
    gate: bool = True
    self_connection: bool = True
    residual: bool = True
    readout_hidden: int = 16
    pooling: str | None = None  # "sum" or "mean"; None takes the target's own
    avg_neighbors: float | None = None  # aggregation normalisation; None: measured on the train split
    conv: str = "auto"  # how the convolution is computed (same function): auto | fast | e3nn


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.5  # ReduceLROnPlateau on the validation MAE
    lr_patience: int = 5
    min_lr: float = 1e-5
    early_stop: int = 20  # epochs without validation improvement; 0 disables
    early_stop_delta: float = 0.0  # an improvement is a val MAE below the reference by more than this fraction
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None  # stop an epoch after this many optimiser steps (quick runs)
    # epochs whose checkpoint is kept as epochs/epoch{N}.pt (0: before training), for `irrepprobe dynamics`
    keep_epochs: list = field(default_factory=list)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        if not isinstance(d, dict):
            raise IrrepprobeError("a config must be a mapping with sections data, model, train")
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(d) - set(sections)
        if unknown:
            raise IrrepprobeError(f"unknown config section {sorted(unknown)[0]!r}; valid: {', '.join(sections)}")
        cfg = cls()
        for name, values in d.items():
            for key, value in (values or {}).items():
                cfg.set(f"{name}.{key}", value)
        cfg.validate()
        return cfg

    def set(self, key: str, value: Any) -> None:
        """Set ``section.field`` to ``value`` (a string is read as YAML: ``[0,3,4]``, ``true``, ``1e-3``)."""
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else value
            except yaml.YAMLError:
                pass
        section, _, name = key.partition(".")
        sub = getattr(self, section, None) if section in ("data", "model", "train") else None
        if sub is None or not name:
            raise IrrepprobeError(f"bad config key {key!r}: use section.field with section data, model or train")
        names = [f.name for f in dataclasses.fields(sub)]
        if name not in names:
            raise IrrepprobeError(f"unknown config key {key!r}; valid keys in {section}: {', '.join(names)}")
        if isinstance(value, dict):
            value = {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
        setattr(sub, name, value)

    def validate(self) -> "Config":
        from .data.targets import get_target

        d, m, t = self.data, self.model, self.train
        get_target(d.target)
        _check(d.subset is None or _int(d.subset) and d.subset >= 3, "data.subset", "an integer >= 3 or null")
        _check(isinstance(d.split, (list, tuple)) and len(d.split) == 3
               and all(_num(s) and s >= 0 for s in d.split), "data.split", "three non-negative numbers")
        _check(_int(d.split_seed), "data.split_seed", "an integer")
        _check(d.train_size is None or _int(d.train_size) and d.train_size >= 1, "data.train_size",
               "a positive integer or null")
        _check(isinstance(m.ls, (list, tuple)) and len(m.ls) > 0 and all(_int(l) and 0 <= l <= 10 for l in m.ls)
               and len(set(m.ls)) == len(m.ls) and 0 in m.ls, "model.ls", "distinct orders 0..10 that include 0")
        if isinstance(m.mul, dict):
            _check(set(m.mul) == set(m.ls) and all(_int(v) and v >= 1 for v in m.mul.values()),
                   "model.mul", f"a positive integer or a mapping with one positive integer per order in {m.ls}")
        else:
            _check(_int(m.mul) and m.mul >= 1, "model.mul", "a positive integer or a mapping {l: mul}")
        _check(m.parity in ("natural", "both"), "model.parity", "'natural' or 'both'")
        for key in ("layers", "n_basis", "radial_hidden", "readout_hidden"):
            _check(_int(getattr(m, key)) and getattr(m, key) >= 1, f"model.{key}", "a positive integer")
        _check(_num(m.cutoff) and m.cutoff > 0, "model.cutoff", "a positive number of Angstrom")
        for key in ("gate", "self_connection", "residual"):
            _check(isinstance(getattr(m, key), bool), f"model.{key}", "true or false")
        _check(m.pooling in (None, "sum", "mean"), "model.pooling", "'sum', 'mean' or null")
        _check(m.conv in ("auto", "fast", "e3nn"), "model.conv", "'auto', 'fast' or 'e3nn'")
        _check(m.avg_neighbors is None or _num(m.avg_neighbors) and m.avg_neighbors > 0,
               "model.avg_neighbors", "a positive number or null")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            _check(_int(getattr(t, key)) and getattr(t, key) >= 1, f"train.{key}", "a positive integer")
        for key in ("lr", "min_lr", "lr_factor", "grad_clip"):
            _check(_num(getattr(t, key)) and getattr(t, key) > 0, f"train.{key}", "a positive number")
        _check(_num(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "a non-negative number")
        _check(_int(t.lr_patience) and t.lr_patience >= 0, "train.lr_patience", "a non-negative integer")
        _check(_int(t.early_stop) and t.early_stop >= 0, "train.early_stop", "a non-negative integer")
        _check(_num(t.early_stop_delta) and 0 <= t.early_stop_delta < 1, "train.early_stop_delta",
               "a fraction from 0 (any decrease improves) to below 1")
        _check(_int(t.seed), "train.seed", "an integer")
        _check(t.device in ("auto", "cpu", "cuda") or str(t.device).startswith("cuda:"),
               "train.device", "auto, cpu or cuda")
        _check(t.max_steps is None or _int(t.max_steps) and t.max_steps >= 1, "train.max_steps",
               "a positive integer or null")
        _check(isinstance(t.keep_epochs, list) and all(_int(e) and 0 <= e <= t.epochs for e in t.keep_epochs),
               "train.keep_epochs", f"a list of epoch numbers from 0 (before training) to train.epochs ({t.epochs})")
        return self

    def muls(self) -> dict[int, int]:
        m = self.model
        return {int(l): int(m.mul[l] if isinstance(m.mul, dict) else m.mul) for l in sorted(m.ls)}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise IrrepprobeError(f"bad config value for {key}: expected {expected}")


def load_config(path, overrides: list[str] = ()) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise IrrepprobeError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise IrrepprobeError(f"config {path} is not valid YAML{where}: {problem}") from None
    except OSError as e:
        raise IrrepprobeError(f"cannot read config {path}: {str(e).splitlines()[0]}") from None
    cfg = Config.from_dict(raw)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] = ()) -> Config:
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise IrrepprobeError(f"bad --set {item!r}: use section.key=value, e.g. model.ls=[0,1,2]")
        cfg.set(key.strip(), value)
    return cfg.validate()
