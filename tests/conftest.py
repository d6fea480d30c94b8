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


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    """The default report on the shipped example (a trained U0 model, L=[0,1,2], 3 layers), 120 of its test
    molecules: shared by the report's tests and the browser's."""
    from irrepprobe.capture import capture_checkpoint
    from irrepprobe.examples import example_checkpoint
    from irrepprobe.study import make_report

    out = tmp_path_factory.mktemp("rep")
    cap = capture_checkpoint(example_checkpoint(), subset=120, out=out / "cap", device="cpu")
    return make_report(cap, out=out / "report", device="cpu", log=lambda *a: None)


def smoke_config(**overrides):
    from irrepprobe.models import preset

    cfg = preset("smoke")
    cfg.set("train.device", "cpu")
    for key, value in overrides.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.validate()
