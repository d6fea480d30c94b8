"""Adapters others can write: a third-party package registers its family in the ``irrepprobe.adapters`` entry
point group and irrepprobe finds it. The example package in tests/example_adapter is really installed (pip,
into a temporary directory) and a capture runs through it from the command line; its layout conversion passes
the equivariance check (l=1 rotates with D(R)). A file no adapter claims gets one line naming the families
tried and the guide."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_adapter"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    import shutil

    source, target = tmp_path_factory.mktemp("src") / "example_adapter", tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, source)  # the build writes next to its source: not into the repository
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True)
    return target


@pytest.fixture(scope="module")
def molecules(tmp_path_factory):
    from ase.build import molecule
    from ase.io import write

    path = tmp_path_factory.mktemp("data") / "molecules.extxyz"
    write(path, [molecule(m) for m in ("H2O", "CH4", "NH3", "C2H4", "CH3OH", "HCOOH")])
    return path


def _cli(args, site, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "irrepprobe", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True)


def test_an_installed_adapter_package_captures_from_the_command_line(site, molecules, tmp_path):
    model = tmp_path / "net.toy"
    r = subprocess.run([sys.executable, "-c", f"import irrepprobe_toy; irrepprobe_toy.write_model({str(model)!r})"],
                       env={**os.environ, "PYTHONPATH": str(site)}, check=True)
    r = _cli(["capture", str(model), "--data", str(molecules), "--out", "cap"], site, tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "cap" / "meta.json").read_text())
    assert meta["adapter"] == "toy" and meta["model_summary"].startswith("ToyNet")
    assert meta["equivariance"]["passed"] is True, meta["equivariance"]


def test_the_entry_point_adapter_converts_its_layout_so_that_vectors_rotate(site, molecules, monkeypatch):
    from irrepprobe.adapters import detect, families
    from irrepprobe.capture.equivariance import check_equivariance
    from irrepprobe.data.structures import read_structures

    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    assert list(families())[-1] == "e3nn" and "toy" in families()
    toy = importlib.import_module("irrepprobe_toy")
    path = toy.write_model(Path(site) / "m.toy", seed=1)
    adapter = detect(str(path))
    assert adapter.name == "toy"
    model = adapter.load(str(path))
    table, summary = check_equivariance(model, read_structures(molecules), n=6)
    assert summary["passed"], summary
    vec = table[table["block"] == "1o"]
    assert len(vec) == 2 and (vec["rotation_max_rel"] < 1e-5).all()

    # the same adapter with the components in another order fails the check: the test can fail
    monkeypatch.setattr(toy, "Q", toy.Q[[1, 2, 0]])
    _, broken = check_equivariance(model, read_structures(molecules), n=6)
    assert not broken["passed"]


def test_a_model_no_adapter_claims_gets_one_line_naming_the_families_and_the_guide(site, tmp_path):
    bad = tmp_path / "weights.bin"
    torch.save({"w": torch.zeros(3)}, bad)
    r = _cli(["capture", str(bad), "--data", "qm9", "--subset", "2", "--out", "cap"], site, tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    line = r.stderr.strip()
    assert "no adapter claims" in line and "toy" in line and "e3nn" in line and "GUIDE.md" in line
