import pytest
import torch

from irrepprobe.data import make_split, radius_graph, target_values, to_cartesian
from irrepprobe.errors import IrrepprobeError


def test_all_molecules_parsed(qm9):
    assert len(qm9) == 130_831
    assert qm9.species.numel() == 2_359_210 == int(qm9.ptr[-1])
    assert int(qm9.n_atoms.max()) == 29


def test_atomization_energy_units(qm9):
    u0 = target_values(qm9, "u0_atom")[:, 0]
    assert int(qm9.index[0]) == 1  # methane
    assert u0[0].item() == pytest.approx(-17.172, abs=2e-3)
    assert u0.mean().item() == pytest.approx(-76.116, abs=1e-2)
    assert u0.std().item() == pytest.approx(10.324, abs=1e-2)


def test_energies_in_ev(qm9):
    gap = target_values(qm9, "gap")[:, 0]
    assert 5 < gap.mean().item() < 8  # about 6.9 eV; in Hartree it would be ~0.25
    assert torch.allclose(gap, target_values(qm9, "lumo")[:, 0] - target_values(qm9, "homo")[:, 0], atol=5e-3)  # CSV rounds Ha


def test_dipole_vector_matches_dipole_norm(qm9):
    vec = target_values(qm9, "dipole_vec")[:20000]
    mu = target_values(qm9, "mu")[:20000, 0]
    r = torch.corrcoef(torch.stack([vec.norm(dim=1), mu]))[0, 1]
    assert r > 0.9
    assert torch.allclose(to_cartesian("dipole_vec", vec).norm(dim=1), vec.norm(dim=1))


def test_polarizability_trace_is_alpha(qm9):
    p = target_values(qm9, "polarizability")
    cart = to_cartesian("polarizability", p)
    assert torch.allclose(cart, qm9.polarizability, atol=1e-8)
    alpha = target_values(qm9, "alpha")[:, 0]
    assert (cart.diagonal(dim1=1, dim2=2).mean(1) - alpha).abs().mean() < 0.01


def test_unknown_target_lists_valid_names(qm9):
    with pytest.raises(IrrepprobeError, match="valid targets: .*u0_atom.*dipole_vec"):
        target_values(qm9, "energy")


def test_split_is_deterministic_and_disjoint():
    a = make_split(1000, (0.8, 0.1, 0.1), seed=3)
    b = make_split(1000, (0.8, 0.1, 0.1), seed=3)
    c = make_split(1000, (0.8, 0.1, 0.1), seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["test"], c["test"])
    assert [len(a[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert len(torch.cat(list(a.values())).unique()) == 1000


def test_split_counts_and_subset():
    s = make_split(130_831, (100, 20, 30), seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [100, 20, 30]
    sub = make_split(130_831, (0.8, 0.1, 0.1), seed=0, subset=500)
    assert sum(len(v) for v in sub.values()) == 500


def test_training_sizes_are_nested_and_leave_validation_and_test_alone():
    full = make_split(130_831, (4000, 500, 1000), seed=0)
    sizes = [make_split(130_831, (4000, 500, 1000), seed=0, train_size=n) for n in (250, 1000, 4000)]
    for small, large in zip(sizes, sizes[1:]):
        assert set(small["train"].tolist()) < set(large["train"].tolist())
    assert [len(s["train"]) for s in sizes] == [250, 1000, 4000]
    assert torch.equal(sizes[-1]["train"], full["train"])
    assert all(torch.equal(s[k], full[k]) for s in sizes for k in ("val", "test"))
    with pytest.raises(IrrepprobeError, match="train_size 5000"):
        make_split(130_831, (4000, 500, 1000), seed=0, train_size=5000)


@pytest.mark.parametrize("sizes,subset", [((0.99, 0.01, 0.0), 50), ((10, 10, 10), 20)])
def test_impossible_split_is_refused(sizes, subset):
    with pytest.raises(IrrepprobeError):
        make_split(1000, sizes, seed=0, subset=subset)


def test_radius_graph_matches_brute_force(qm9):
    mols = [0, 5, 100, 2000]
    pos = torch.cat([qm9.pos[qm9.ptr[i]:qm9.ptr[i + 1]] for i in mols])
    batch = torch.cat([torch.full((int(qm9.n_atoms[i]),), k) for k, i in enumerate(mols)])
    edges = radius_graph(pos, batch, 2.0)
    want = {(j, i) for i in range(len(pos)) for j in range(len(pos))
            if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() < 2.0}
    assert set(map(tuple, edges.T.tolist())) == want
