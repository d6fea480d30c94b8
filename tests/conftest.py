import os
from pathlib import Path

import pytest
import torch

import irrepprobe  # noqa: F401  (first: lets e3nn 0.4.x, which mace-torch pins, load its constants)

# One QM9 tensor cache for the whole suite (built once, ~10 s), unless the caller chose one.
os.environ.setdefault("IRREPPROBE_CACHE", str(Path.home() / ".cache" / "irrepprobe"))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def qm9():
    from irrepprobe.data import load_qm9

    return load_qm9()


def smoke_config(**overrides):
    from irrepprobe.models import preset

    cfg = preset("smoke")
    cfg.set("train.device", "cpu")
    for key, value in overrides.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.validate()
