"""The equivariance check on real models and real structures: our example checkpoint, e3nn networks
(and two made non-equivariant on purpose, tests/broken_nets.py), SevenNet-0 on QM9 molecules and rattled
periodic crystals, and the NequIP/Allegro test models."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from irrepprobe.adapters import get_adapter, load_model
from irrepprobe.capture import capture, capture_untrained, check_equivariance, equivariance_line
from irrepprobe.capture.equivariance import TABLE_COLUMNS, TOLERANCE, random_rotations, rotate_each
from irrepprobe.data.structures import qm9_structures, read_structures
from irrepprobe.examples import example_checkpoint

SIMPLE = "irrepprobe.examples.e3nn_nets:simple_network"
NEQUIP = Path(__file__).parent / "data" / "nequip"


@pytest.fixture(scope="module")
def molecules(qm9):
    return qm9_structures(qm9, torch.arange(100, 108))


@pytest.fixture(scope="module")
def example():
    return load_model(str(example_checkpoint()), "irrepprobe")


@pytest.fixture
def one_thread():
    """Tiny e3nn ops: one thread is faster, and two crawl when the 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crystals(path: Path):
    """Rattled Si (diamond) and Cu (fcc) supercells, written as extxyz and read back as Structures."""
    import ase.io
    from ase.build import bulk

    frames = []
    for i, (at, reps) in enumerate([(bulk("Si", "diamond", a=5.43, cubic=True), (2, 1, 1)),
                                    (bulk("Cu", "fcc", a=3.61, cubic=True), (2, 2, 1))]):
        at = at.repeat(reps)
        at.rattle(stdev=0.05, seed=i)
        frames.append(at)
    ase.io.write(path, frames, format="extxyz")
    return read_structures(path)


def test_rotations_are_seeded_and_rotate_cells_with_positions(tmp_path):
    R = random_rotations(3, seed=5)
    assert torch.equal(R, random_rotations(3, seed=5)) and not torch.equal(R, random_rotations(3, seed=6))
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3, dtype=torch.float64))
    s = crystals(tmp_path / "c.xyz")
    assert s.pbc.all() and s.cell.abs().sum() > 0
    r = rotate_each(s, R[:2])
    for i in range(2):
        a, b = s.atoms(i), r.atoms(i)
        assert np.allclose(a.get_scaled_positions(wrap=False), b.get_scaled_positions(wrap=False), atol=1e-10)
        assert np.allclose(a.get_all_distances(mic=True), b.get_all_distances(mic=True), atol=1e-10)
        assert not np.allclose(a.positions, b.positions)


def test_example_model_passes_with_tiny_changes(example, molecules):
    table, summary = check_equivariance(example, molecules, [p.name for p in example.adapter.points(example)], n=8)
    assert list(table.columns) == TABLE_COLUMNS
    assert summary["passed"] and summary["failed_blocks"] == [] and summary["structures"] == 8
    assert summary["seed"] == 0 and summary["tolerance"] == TOLERANCE and summary["forces_max_rel"] is None
    assert summary["output_max_rel"] < 1e-5 and summary["features_max_rel"] < 1e-4
    feats = table[table["kind"] == "node"]
    assert set(feats["point"]) == {p.name for p in example.adapter.points(example)}
    vectors = feats[feats["l"] > 0]
    assert len(vectors) and vectors["rotation_max_rel"].notna().all() and (vectors["rotation_max_rel"] < 1e-4).all()
    assert (table["max_rel"] < 1e-4).all() and table["passed"].all()
    assert "passed on 8 rotated structures" in equivariance_line(summary)


def test_e3nn_network_passes_and_broken_ones_fail_where_they_break(molecules, one_thread):
    good = load_model(SIMPLE, "e3nn")
    _, summary = check_equivariance(good, molecules, [p.name for p in good.adapter.points(good)], n=6)
    assert summary["passed"], summary

    leak = load_model("broken_nets:position_leak", "e3nn")
    table, summary = check_equivariance(leak, molecules, [p.name for p in leak.adapter.points(leak)], n=6)
    assert not summary["passed"] and summary["output_max_rel"] > 0.01
    failed = summary["failed_blocks"]
    assert failed[0] == "mp.layers.1.second 0e" and "mp.layers.1 0e" in failed and "output" in failed
    assert not any(b.startswith(("mp.layers.0", "mp.layers.1.first")) for b in failed)  # upstream is fine
    assert table.set_index(["point", "block"]).loc[("mp.layers.1", "0e"), "invariant_max_rel"] > 0.01
    line = equivariance_line(summary)
    assert line.startswith("equivariance check FAILED") and "output changes by" in line
    assert "block: mp.layers.1.second 0e" in line  # where it enters (the first failing, here also the worst)

    turn = load_model("broken_nets:fixed_rotation", "e3nn")
    table, summary = check_equivariance(turn, molecules, [p.name for p in turn.adapter.points(turn)], n=6)
    row = table.set_index(["point", "block"]).loc[("mp.layers.1", "1o")]
    # the norms of a turned vector stay: only the comparison against D(R) sees it
    assert row["invariant_max_rel"] < 1e-4 and row["rotation_max_rel"] > 0.1 and not row["passed"]
    assert not summary["passed"] and summary["failed_blocks"][0] == "mp.layers.1.second 1o"


def test_capture_stores_the_check_and_prints_a_failure(example, molecules, tmp_path, capsys, one_thread):
    cap = capture(example, molecules, None, tmp_path / "cap", batch_size=4, check_equivariance=5)
    eq = cap.meta["equivariance"]
    assert eq["passed"] and eq["structures"] == 5 and eq["worst"]
    assert json.loads((tmp_path / "cap" / "meta.json").read_text())["equivariance"]["structures"] == 5
    table = pd.read_csv(tmp_path / "cap" / "equivariance.csv")
    assert list(table.columns) == TABLE_COLUMNS and {"output"} <= set(table["kind"])
    assert "equivariance_max_rel" in cap.summary.columns
    assert cap.summary["equivariance_max_rel"].notna().all() and (cap.summary["equivariance_max_rel"] < 1e-4).all()
    assert "FAILED" not in capsys.readouterr().out

    ctl = capture_untrained(cap, tmp_path / "ctl", device="cpu", batch_size=4)  # the control: no check
    assert ctl.meta["equivariance"] is None and not (tmp_path / "ctl" / "equivariance.csv").exists()

    skipped = capture(example, molecules, None, tmp_path / "cap", batch_size=4, check_equivariance=0)
    assert skipped.meta["equivariance"] is None and not (tmp_path / "cap" / "equivariance.csv").exists()

    leak = load_model("broken_nets:position_leak", "e3nn")
    bad = capture(leak, molecules, None, tmp_path / "bad", batch_size=8, check_equivariance=3)
    assert bad.meta["equivariance"]["passed"] is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("equivariance check FAILED on 3 rotated structures")
    by_block = bad.summary.set_index(["point", "block"])["equivariance_max_rel"]
    assert by_block[("mp.layers.0", "0e")] < 1e-4 and by_block[("mp.layers.1", "0e")] > 0.01


@pytest.fixture(scope="module")
def seven():
    pytest.importorskip("sevenn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("7net-0", "sevenn", trust=True)


def test_sevenn_passes_on_molecules_and_periodic_crystals_with_forces_rotated(seven, molecules, tmp_path):
    names = [p.name for p in seven.adapter.points(seven)]
    for structures, n in [(molecules, 2), (crystals(tmp_path / "crystals.xyz"), 2)]:
        table, summary = check_equivariance(seven, structures, names, n=n, seed=3)
        assert summary["passed"], summary
        assert summary["forces_max_rel"] is not None and summary["forces_max_rel"] < 1e-4
        assert summary["output_max_rel"] < 1e-5 and summary["features_max_rel"] < 1e-4
        assert set(table["kind"]) == {"node", "edge", "output", "forces"}
        vectors = table[(table["kind"] == "node") & (table["block"] == "1e")]  # parity off: l=1 is 1e
        assert len(vectors) and (vectors["rotation_max_rel"] < 1e-4).all()


@pytest.mark.parametrize("family", ["nequip", "allegro"])
def test_nequip_and_allegro_pass(family):
    pytest.importorskip("nequip")
    pytest.importorskip("allegro")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_adapter("nequip").load(str(NEQUIP / f"{family}.ckpt"), trust=True)
        structures = read_structures(NEQUIP / "test.xyz")
        names = [p.name for p in model.adapter.points(model)]
        table, summary = check_equivariance(model, structures, names, n=6)
    assert summary["passed"], summary
    assert summary["forces_max_rel"] is not None and summary["forces_max_rel"] < 1e-4
    assert max(summary["output_max_rel"], summary["features_max_rel"]) < 1e-4


def test_cli_capture_prints_the_result_and_0_skips(tmp_path, capsys):
    from irrepprobe.cli import main

    assert main(["capture", "--subset", "6", "--out", str(tmp_path / "a"), "--check-equivariance", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("equivariance check passed on 3 rotated structures")
    assert (tmp_path / "a" / "equivariance.csv").exists()
    assert main(["capture", "--subset", "6", "--out", str(tmp_path / "b"), "--check-equivariance", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "equivariance check skipped"
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["equivariance"] is None


def few_atoms(path: Path):
    """Two lone atoms (off the origin), CO2 and HCN (collinear), CH4 (a full test), and a one-atom periodic
    cell (its lattice breaks the symmetry: a full test), as extxyz read back."""
    import ase.io
    from ase import Atoms
    from ase.build import molecule

    frames = [Atoms("C", positions=[[0.3, 0.2, 0.1]]), Atoms("O", positions=[[1.0, -0.5, 0.2]]),
              molecule("CO2"), molecule("HCN"), molecule("CH4"),
              Atoms("C", positions=[[0.1, 0.2, 0.3]], cell=[[3.0, 0, 0], [0.5, 3.2, 0], [0, 0.4, 3.5]], pbc=True)]
    for f in frames[2:5]:
        f.positions += [0.4, -0.3, 0.7]
    ase.io.write(path, frames, format="extxyz")
    return read_structures(path)


def test_lone_atoms_test_nothing_and_collinear_structures_are_named(example, tmp_path, one_thread):
    from irrepprobe.capture.equivariance import geometry

    s = few_atoms(tmp_path / "few.xyz")
    assert geometry(s) == ["one atom", "one atom", "collinear", "collinear", "", ""]
    names = [p.name for p in example.adapter.points(example)]
    # lone atoms only: a 0.0 change that tests nothing is neither a pass nor silent
    _, summary = check_equivariance(example, s.take([0, 1]), names, n=2)
    assert summary["passed"] is None and summary["tested"] == 0 and summary["one_atom"] == 2
    line = equivariance_line(summary)
    assert "tested nothing" in line and "lone atom" in line and "passed" not in line
    # the check takes what it can test first: one structure of [atom, atom, CH4] is the molecule
    _, summary = check_equivariance(example, s.take([0, 1, 4]), names, n=1)
    assert summary["passed"] is True and summary["one_atom"] == 0 and summary["tested"] == 1
    # forced to use them, it passes and says which it could not test
    _, summary = check_equivariance(example, s.take([0, 2, 3, 4]), names, n=4)
    assert summary["passed"] is True and (summary["one_atom"], summary["collinear"], summary["tested"]) == (1, 2, 3)
    line = equivariance_line(summary)
    assert line.startswith("equivariance check passed") and "1 of the 4 structures checked is a lone atom" in line
    assert "2 of the 4 structures checked are collinear" in line and "D(R)" in line
    # collinear structures still catch l=1 features turned in a fixed frame (the D(R) comparison)
    turn = load_model("broken_nets:fixed_rotation", "e3nn")
    _, summary = check_equivariance(turn, s.take([2, 3]), [p.name for p in turn.adapter.points(turn)], n=2)
    assert summary["passed"] is False and summary["collinear"] == 2
    assert "with its norms unchanged" in summary["cause"] and "likely cause:" in equivariance_line(summary)
    # a lone atom is a failure when the model reads absolute positions: evidence, not "untested"
    leak = load_model("broken_nets:position_leak", "e3nn")
    _, summary = check_equivariance(leak, s.take([0, 1]), [p.name for p in leak.adapter.points(leak)], n=2)
    assert summary["passed"] is False and summary["tested"] == 0


def test_a_capture_of_lone_atoms_says_the_check_tested_nothing(example, tmp_path, capsys, one_thread):
    from irrepprobe.report.summary import header, read_first

    s = few_atoms(tmp_path / "few.xyz").take([0, 1])
    cap = capture(example, s, None, tmp_path / "cap", batch_size=4, check_equivariance=2)
    eq = cap.meta["equivariance"]
    assert eq["passed"] is None and eq["one_atom"] == 2
    out = capsys.readouterr().out
    assert "equivariance check on 2 rotated structures tested nothing" in out
    first = read_first(cap.meta, pd.DataFrame(), pd.DataFrame(columns=["check", "quantity", "message"]))
    assert len(first) == 1 and first[0].startswith("**The equivariance check tested nothing**")
    assert any("tested nothing" in line for line in header(cap.meta, pd.DataFrame()))
