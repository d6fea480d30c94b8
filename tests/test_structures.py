"""Structures from any file ASE reads, QM9 by name and exported to extxyz, and capture over them."""
import numpy as np
import pytest
import torch

from irrepprobe.cli import main
from irrepprobe.data.structures import qm9_structures, read_structures, write_extxyz
from irrepprobe.examples import example_checkpoint


def _cli(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, capsys.readouterr()


def test_labels_come_from_info_calculator_results_and_arrays(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    import ase.io

    frames = []
    for k in range(3):
        at = Atoms("SiO2", positions=np.random.default_rng(k).normal(size=(3, 3)))
        at.info.update({"gap": 1.5 + k, "name": f"m{k}", "dipole_ref": np.array([k, 0.0, 1.0])})
        at.arrays["q"] = np.array([0.1, -0.05, -0.05]) * (k + 1)
        at.calc = SinglePointCalculator(at, energy=-10.0 - k, forces=np.full((3, 3), 0.1 * k))
        frames.append(at)
    ase.io.write(tmp_path / "s.extxyz", frames, format="extxyz")
    s = read_structures(tmp_path / "s.extxyz")
    assert len(s) == 3 and s.elements == [8, 14]
    assert np.allclose(s.labels["gap"], [1.5, 2.5, 3.5]) and np.allclose(s.labels["energy"], [-10, -11, -12])
    assert s.labels["dipole_ref"].shape == (3, 3) and "name" not in s.labels
    assert s.atom_labels["forces"].shape == (9, 3) and s.atom_labels["q"].shape == (9,)
    assert np.array_equal(s.composition(), [[2, 1]] * 3)
    assert s.sha256 and len(s.sha256) == 64


def test_qm9_round_trips_through_extxyz(qm9, tmp_path):
    s = qm9_structures(qm9, torch.arange(10, 16))
    write_extxyz(s, tmp_path / "q.xyz")
    back = read_structures(tmp_path / "q.xyz")
    assert torch.equal(back.numbers, s.numbers) and torch.allclose(back.pos, s.pos, atol=1e-6)
    for k, v in s.labels.items():
        assert np.allclose(back.labels[k], v, rtol=1e-6), k
    assert np.allclose(back.atom_labels["charges"], s.atom_labels["charges"], atol=1e-6)


def test_export_cli_and_capture_of_the_exported_file_match_qm9(tmp_path, capsys):
    code, out = _cli(capsys, "data", "export", tmp_path / "t.xyz", "--subset", 40)
    assert code == 0 and "40 QM9 molecules" in out.out
    code, _ = _cli(capsys, "capture", "--data", tmp_path / "t.xyz", "--out", tmp_path / "cf", "--device", "cpu")
    assert code == 0
    from irrepprobe.adapters import load_model
    from irrepprobe.capture import capture, load_capture
    from irrepprobe.data import load_qm9, make_split

    qm9 = load_qm9()
    model = load_model(example_checkpoint())
    same = qm9_structures(qm9, make_split(len(qm9), seed=0)["test"][:40])
    q = capture(model, same, out=tmp_path / "cq", target="u0_atom")
    f = load_capture(tmp_path / "cf")
    assert f.meta["target"] == q.meta["target"] == "u0_atom" and f.meta["data_sha256"]
    assert np.allclose(f.errors, q.errors, atol=1e-4)
    assert np.allclose(f.pooled("layers.1", "1o", "norm_sum"), q.pooled("layers.1", "1o", "norm_sum"), rtol=1e-4)


def test_rotating_structures_rotates_positions_and_cells(qm9):
    s = qm9_structures(qm9, torch.arange(3))
    from e3nn import o3

    R = o3.rand_matrix().double()
    r = s.rotated(R)
    assert torch.allclose(r.pos, s.pos @ R.T) and torch.allclose(torch.cdist(r.pos, r.pos), torch.cdist(s.pos, s.pos))


@pytest.mark.parametrize("content,message", [
    (b"this is not a structure file\n", "ASE cannot read"),
    (None, "data file not found"),
])
def test_a_file_ase_cannot_read_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.xyz"
    if content is not None:
        path.write_bytes(content)
    code, out = _cli(capsys, "capture", "--data", path, "--out", tmp_path / "c")
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_our_model_refuses_elements_it_does_not_know(tmp_path, capsys):
    from ase import Atoms
    import ase.io

    ase.io.write(tmp_path / "si.xyz", [Atoms("SiH4", positions=np.random.default_rng(0).normal(size=(5, 3)))])
    code, out = _cli(capsys, "capture", example_checkpoint(), "--data", tmp_path / "si.xyz", "--out", tmp_path / "c")
    assert code == 2 and "atomic numbers [14]" in out.err and len(out.err.strip().splitlines()) == 1


def test_unknown_target_label_is_refused(tmp_path, capsys):
    code, out = _cli(capsys, "capture", "--subset", 5, "--target", "nosuch", "--out", tmp_path / "c")
    assert code == 2 and "no label 'nosuch'" in out.err


def test_export_of_a_checkpoints_own_split_holds_its_molecules(tmp_path, capsys):
    from irrepprobe.data import load_qm9
    from irrepprobe.train import load_checkpoint

    code, out = _cli(capsys, "data", "export", tmp_path / "own.xyz", "--checkpoint", example_checkpoint(),
                     "--split", "val", "--subset", 12)
    assert code == 0 and "12 QM9 molecules" in out.out
    want = load_checkpoint(example_checkpoint())["split"]["val"][:12]
    got = read_structures(tmp_path / "own.xyz")
    ref = qm9_structures(load_qm9(), want)
    assert torch.equal(got.numbers, ref.numbers) and torch.allclose(got.pos.float(), ref.pos.float(), atol=1e-5)
    code, _ = _cli(capsys, "data", "export", tmp_path / "x.xyz", "--checkpoint", example_checkpoint(), "--split", "all")
    assert code == 2
