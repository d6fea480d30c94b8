"""SO3LR, the pretrained molecular potential shipped in so3krates-torch: a family without e3nn irreps.
Its energies and forces equal the package's own calculator's; its degrees 1-4, converted into e3nn's basis,
rotate with D(R) and its invariants stay put; masking a degree zeroes it in every layer; the untrained
control has the same architecture; bad input (an element outside its set, a charged periodic cell, no
--trust, prune of a degree) gets one line."""
import numpy as np
import pytest
import torch

pytest.importorskip("so3krates_torch")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from irrepprobe.adapters import detect, load_model, predict_all  # noqa: E402
from irrepprobe.capture.equivariance import check_equivariance  # noqa: E402
from irrepprobe.data.structures import from_atoms  # noqa: E402
from irrepprobe.errors import IrrepprobeError  # noqa: E402
from irrepprobe.metrics import masked  # noqa: E402

MOLS = ("H2O", "CH4", "CH3CH2OH", "C6H6", "CH3COOH", "CH3SH", "PH3", "CH3Cl")


@pytest.fixture(scope="module")
def so3lr():
    return load_model("so3lr", trust=True)


@pytest.fixture(scope="module")
def mols():
    return from_atoms([molecule(m) for m in MOLS])


def test_the_name_is_detected_and_the_pickle_needs_trust():
    assert detect("so3lr").name == "so3lr"
    with pytest.raises(IrrepprobeError, match="--trust"):
        load_model("so3lr")


def test_energies_and_forces_equal_the_packages_own_calculator(so3lr, mols):
    from so3krates_torch.calculator.so3 import SO3LRCalculator

    from irrepprobe.adapters.so3lr.io import DAMPING, R_MAX_LR, shipped

    e, f = predict_all(so3lr, so3lr.adapter.batches(so3lr, mols, 4), forces=True)
    calc = SO3LRCalculator(model_paths=str(shipped()), r_max_lr=R_MAX_LR, default_dtype="float32",
                           dispersion_energy_cutoff_lr_damping=DAMPING)
    for i in range(len(mols)):
        atoms = mols.atoms(i)
        atoms.calc = calc
        assert float(e[i, 0]) == pytest.approx(atoms.get_potential_energy(), abs=2e-4)
        a, b = int(mols.ptr[i]), int(mols.ptr[i + 1])
        assert np.abs(f[a:b].numpy() - atoms.get_forces()).max() < 1e-4


def test_degrees_rotate_with_d_of_r_in_e3nns_basis(so3lr, mols):
    table, summary = check_equivariance(so3lr, mols, n=len(mols))
    assert summary["passed"], summary
    blocks = table[table["kind"] == "node"]
    assert set(blocks["block"]) == {"0e", "1o", "2e", "3o", "4e"}
    assert (blocks.loc[blocks["l"] > 0, "rotation_max_rel"] < 1e-4).all()
    assert (blocks.loc[blocks["l"] == 0, "invariant_max_rel"] < 1e-4).all()


def test_masking_a_degree_zeroes_it_in_every_layer_and_moves_the_energy(so3lr, mols):
    from irrepprobe.capture.hooks import Recorder

    points = [p for p in so3lr.adapter.points(so3lr) if p.kind == "node"]
    held = {}

    def keep(name):
        def hook(module, args, out):
            held[name] = next(p for p in points if p.name == name).read(out).detach()
        return hook

    m3 = masked(so3lr, [3])
    handles = [m3.module.get_submodule(p.module).register_forward_hook(keep(p.name)) for p in points]
    e3, _ = predict_all(m3, m3.adapter.batches(m3, mols, 8))
    for h in handles:
        h.remove()
    e, _ = predict_all(so3lr, so3lr.adapter.batches(so3lr, mols, 8))
    for name, x in held.items():  # 128x0e + 1o (3) + 2e (5) + 3o (7) + 4e (9): l=3 is columns 136:143
        assert torch.count_nonzero(x[:, 136:143]) == 0 and torch.count_nonzero(x[:, 128:136]) > 0, name
    assert (e3 - e).abs().max() > 1e-2
    assert Recorder  # the capture machinery imports with SO3LR's points


def test_the_untrained_control_has_the_same_architecture_and_other_weights(so3lr, mols):
    dtype = torch.get_default_dtype()
    u = so3lr.adapter.untrained(so3lr, seed=3)
    assert torch.get_default_dtype() == dtype  # SO3LR's constructor sets the global default; restored
    a, b = so3lr.module.state_dict(), u.module.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    w = "euclidean_transformers.0.interaction_block.linear_layer.weight"
    assert not torch.equal(a[w], b[w]) and "untrained" in u.adapter.summary(u)
    e, _ = predict_all(u, u.adapter.batches(u, mols, 8))
    assert torch.isfinite(e).all()


def test_an_element_outside_its_set_and_a_charged_periodic_cell_are_refused(so3lr):
    with pytest.raises(IrrepprobeError, match="trained on H, C, N, O, F, P, S, Cl; the data also has Si"):
        next(so3lr.adapter.batches(so3lr, from_atoms([molecule("SiH4")])))
    cell = Atoms("Cl", positions=[[0, 0, 0]], cell=[8, 8, 8], pbc=True, info={"charge": -1.0})
    with pytest.raises(IrrepprobeError, match="periodic cell with net charge -1"):
        next(so3lr.adapter.batches(so3lr, from_atoms([cell])))
    neutral = molecule("H2O")
    neutral.cell, neutral.pbc = [10, 10, 10], True
    e, _ = predict_all(so3lr, so3lr.adapter.batches(so3lr, from_atoms([neutral])))
    assert torch.isfinite(e).all()


def test_the_command_line_says_why_no_degree_can_be_pruned(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "irrepprobe", "prune", "so3lr", "--trust", "--drop-l", "4",
                        "--data", "qm9", "--subset", "4", "--out", str(tmp_path / "p")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "head" in r.stderr and "Masking a degree" in r.stderr


def test_the_e3nn_adapter_says_so3lr_is_not_an_e3nn_model_and_names_the_families(tmp_path):
    import subprocess
    import sys

    from irrepprobe.adapters.so3lr.io import shipped

    r = subprocess.run([sys.executable, "-m", "irrepprobe", "capture", str(shipped()), "--format", "e3nn", "--trust",
                        "--data", "qm9", "--subset", "2", "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not an e3nn-style model" in r.stderr and "so3lr" in r.stderr and "GUIDE.md" in r.stderr
