"""The SevenNet adapter on the real pretrained SevenNet-0 and real QM9 molecules (no mocks)."""
import copy
import os
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("sevenn")

from e3nn import o3  # noqa: E402

from irrepprobe.adapters import detect, get_adapter  # noqa: E402
from irrepprobe.capture import capture, hooked, model_of  # noqa: E402
from irrepprobe.cli import main  # noqa: E402
from irrepprobe.irreps import blocks, split  # noqa: E402
from irrepprobe.data.structures import qm9_structures  # noqa: E402
from irrepprobe.errors import IrrepprobeError  # noqa: E402

ROWS = torch.arange(100, 108)


@pytest.fixture(scope="module")
def adapter():
    return get_adapter("sevenn")


@pytest.fixture(scope="module")
def seven(adapter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adapter.load("7net-0", trust=True)


@pytest.fixture(scope="module")
def mols(qm9):
    return qm9_structures(qm9, ROWS)


def run_hooked(adapter, model, batch, points, edit=None):
    """predict with a forward hook on each point that keeps its tensor (and, with ``edit``, replaces
    it through Point.write)."""
    seen = {}

    def make(p):
        def hook(module, args, out):
            x = p.read(out)
            if edit is not None and p.name in edit:
                x = edit[p.name](x)
                out = p.write(out, x)
            seen[p.name] = x.detach()
            return out
        return hook

    with hooked(model.module, {p.module: make(p) for p in points}):
        energy = adapter.predict(model, batch)
    return energy, seen


def pooled(x, index, n):
    return torch.zeros(n, *x.shape[1:], dtype=x.dtype).index_add_(0, index, x)


def test_points_match_real_tensors_and_batches_are_sevenns_own(adapter, seven, mols):
    assert adapter.name == "sevenn" and adapter.has_forces and not adapter.needs_grad
    assert detect("7net-0").name == "sevenn" and detect(seven.info["path"]).name == "sevenn"
    assert seven.quantity.name == "energy" and seven.quantity.unit == "eV" and seven.quantity.per_atom
    assert seven.info["lmax"] == 2 and seven.info["layers"] == 5 and seven.info["cutoff"] == 5.0
    assert not seven.info["is_parity"] and len(seven.sha256) == 64
    text = adapter.summary(seven)
    assert "7net-0" in text and "128x0e+64x1e+32x2e" in text and "parameters" in text

    batches = list(adapter.batches(seven, mols, batch_size=3))
    assert [b.n_structures for b in batches] == [3, 3, 2]
    assert torch.equal(torch.cat([b.rows for b in batches]), torch.arange(8))
    b = next(adapter.batches(seven, mols, batch_size=8))
    assert b.inputs["pos"].dtype == torch.float32 and b.n_atoms == int(mols.n_atoms.sum())
    assert torch.equal(b.atom_batch, mols.structure_of_atom())
    assert torch.equal(b.edge_batch, b.atom_batch[b.inputs["edge_index"][1]])  # edges never cross molecules

    points = adapter.points(seven)
    names = [p.name for p in points]
    assert len(set(names)) == len(names) and len({p.module for p in points}) == len(points)
    energy, seen = run_hooked(adapter, seven, b, points)
    for p in points:
        rows = b.n_atoms if p.kind == "node" else b.n_edges
        assert seen[p.name].shape == (rows, p.irreps.dim), p.name
        assert p.layout == "mul_ir"
    default = adapter.default_points(seven)
    assert default == ["onehot_to_feature_x"] + [f"{t}_equivariant_gate" for t in range(5)]
    kinds = {p.name: p.kind for p in points}
    assert all(kinds[n] == "node" for n in default)
    assert kinds["edge_embedding.spherical"] == "edge" and kinds["0_convolution.convolution"] == "edge"
    roles = {p.name: p.role for p in points}
    assert roles["onehot_to_feature_x"] == "input" and roles["2_self_interaction_2"] == "update"
    assert roles["rescale_atomic_energy"] == "output"
    # the last per-atom energies sum to the predicted totals
    assert torch.allclose(pooled(seen["rescale_atomic_energy"], b.atom_batch, 8), energy, atol=1e-4)

    # the same energies and forces as sevenn's own ASE calculator, one molecule at a time
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator(copy.deepcopy(seven.module), file_type="model_instance", device="cpu")
    forces = adapter.forces(seven, b)
    assert energy.shape == (8, 1) and forces.shape == (b.n_atoms, 3)
    i = 5
    atoms = mols.atoms(i)
    atoms.calc = calc
    assert abs(atoms.get_potential_energy() - float(energy[i])) < 1e-3
    a, c = int(mols.ptr[i]), int(mols.ptr[i + 1])
    assert np.allclose(atoms.get_forces(), forces[a:c].numpy(), atol=1e-4)


def test_default_points_are_rotation_equivariant(adapter, seven, mols):
    torch.manual_seed(0)
    R = o3.rand_matrix()
    points = [p for p in adapter.points(seven) if p.name in adapter.default_points(seven)]
    b = next(adapter.batches(seven, mols, batch_size=8))
    br = next(adapter.batches(seven, mols.rotated(R), batch_size=8))
    e0, seen0 = run_hooked(adapter, seven, b, points)
    e1, seen1 = run_hooked(adapter, seven, br, points)
    assert torch.allclose(e0, e1, rtol=1e-5, atol=0)
    checked_vectors = 0
    for p in points:
        parts0, parts1 = split(seen0[p.name], p.irreps), split(seen1[p.name], p.irreps)
        for name, x0 in parts0.items():
            x1 = parts1[name]
            n0 = pooled(x0.norm(dim=-1), b.atom_batch, 8)  # per-channel norms summed over atoms
            n1 = pooled(x1.norm(dim=-1), b.atom_batch, 8)
            assert (n1 - n0).abs().max() <= 1e-5 * n0.abs().max() + 1e-12, (p.name, name)
            s0, s1 = pooled(x0, b.atom_batch, 8), pooled(x1, b.atom_batch, 8)
            if name == "0e":
                assert (s1 - s0).abs().max() <= 1e-5 * s0.abs().max(), p.name
            elif name == "1e":  # e3nn's basis: the pooled vectors rotate with D(R) (== R for 1e)
                D = o3.Irreps("1e").D_from_matrix(R)
                assert (s1 - s0 @ D.T).abs().max() <= 1e-5 * s0.abs().max(), p.name
                checked_vectors += 1
    assert checked_vectors == 4  # layers 0-3 carry vectors; the last layer leaves scalars only


def test_zeroing_a_block_through_read_write_changes_the_energy(adapter, seven, mols):
    points = {p.name: p for p in adapter.points(seven)}
    b = next(adapter.batches(seven, mols, batch_size=8))
    base = adapter.predict(seven, b)

    def zero(point, block):
        cols = next(bl.index for bl in blocks(point.irreps) if bl.name == block)

        def edit(x):
            mask = torch.ones(x.shape[-1], dtype=x.dtype)
            mask[cols] = 0
            return x * mask
        return edit

    for name, block in [("2_equivariant_gate", "1e"), ("edge_embedding.spherical", "2e"),
                        ("1_self_interaction_2", "0e")]:
        p = points[name]
        energy, seen = run_hooked(adapter, seven, b, [p], edit={name: zero(p, block)})
        assert seen[name][:, next(bl.index for bl in blocks(p.irreps) if bl.name == block)].abs().max() == 0
        assert torch.isfinite(energy).all() and (energy - base).abs().max() > 1e-3, name
    assert torch.equal(adapter.predict(seven, b), base)  # hooks gone, batch untouched


def test_pickles_are_refused_without_trust_and_never_unpickled(adapter, tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            # names sevenn's config keys, so that accepts() (raw bytes) takes it for a SevenNet checkpoint
            return os.system, (f"touch {marker} # num_convolution_layer model_state_dict self_connection_type",)

    evil = tmp_path / "x.pth"
    torch.save(Evil(), evil)
    assert adapter.accepts(str(evil))  # raw bytes only
    for source in (str(evil), "7net-0"):
        with pytest.raises(IrrepprobeError, match="--trust") as err:
            adapter.load(source)
        assert "\n" not in str(err.value) and "run code" in str(err.value)
    assert not marker.exists()

    plain = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(3)}, plain)
    assert not adapter.accepts(str(plain)) and not adapter.accepts("7net-nonexistent")
    with pytest.raises(IrrepprobeError, match="not a SevenNet checkpoint"):
        adapter.load(str(plain), trust=True)
    torn = tmp_path / "torn.pth"
    from sevenn._const import SEVENNET_0_11Jul2024

    torn.write_bytes(open(SEVENNET_0_11Jul2024, "rb").read()[:200_000])
    with pytest.raises(IrrepprobeError, match="torn.pth"):
        adapter.load(str(torn), trust=True)
    with pytest.raises(IrrepprobeError, match="7net-0"):
        adapter.load("7net-nonexistent", trust=True)
    assert not marker.exists()


def test_untrained_control_is_finite_and_differs(adapter, seven, mols):
    b = next(adapter.batches(seven, mols, batch_size=8))
    trained = adapter.predict(seven, b)
    control = adapter.untrained(seven, seed=0)
    assert control.info["untrained"] and "(untrained)" in adapter.summary(control)
    assert [p.name for p in adapter.points(control)] == [p.name for p in adapter.points(seven)]
    energy = adapter.predict(control, b)
    assert torch.isfinite(energy).all() and (energy - trained).abs().max() > 1e-2
    again = dict(adapter.untrained(seven, seed=0).module.named_parameters())
    for name, p in control.module.named_parameters():  # the seed fixes the weights
        assert torch.equal(p, again[name]), name
    fixed = dict(seven.module.named_parameters())  # what training does not learn is kept
    assert torch.equal(control.module.get_parameter("rescale_atomic_energy.shift"),
                       fixed["rescale_atomic_energy.shift"])
    assert not torch.equal(control.module.get_parameter("2_self_interaction_2.linear.weight"),
                           fixed["2_self_interaction_2.linear.weight"])


@pytest.fixture(scope="module")
def mf(adapter):
    """The shipped multi-fidelity SevenNet-MF-0 (R2SCAN and PBE), loaded without choosing a fidelity."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adapter.load("7net-mf-0", trust=True)


def test_multi_fidelity_model_is_measured_at_the_chosen_fidelity(adapter, mf, seven, mols, tmp_path):
    assert mf.info["heads"] == ["R2SCAN", "PBE"] and mf.info["head"] is None
    some = mols.take(np.arange(4))
    for refused in (lambda: adapter.choose(mf), lambda: next(adapter.batches(mf, some))):  # never guessed
        with pytest.raises(IrrepprobeError, match="several fidelities") as err:
            refused()
        assert str(err.value).endswith("R2SCAN, PBE; choose one with --modality NAME")
    with pytest.raises(IrrepprobeError, match="no fidelity 'HSE'; valid: R2SCAN, PBE$"):
        adapter.choose(mf, "HSE")
    with pytest.raises(IrrepprobeError, match="single fidelity"):
        adapter.choose(seven, "PBE")
    assert adapter.choose(seven) is seven  # single-fidelity models need no choice

    energies = {}
    for name in ("PBE", "R2SCAN"):
        model = adapter.choose(mf, name)
        assert model.module is mf.module and f"modality {name} of R2SCAN, PBE" in adapter.summary(model)
        energies[name] = adapter.predict(model, next(adapter.batches(model, some, 4)))
    assert mf.info["head"] is None  # choose() copies
    assert (energies["PBE"] - energies["R2SCAN"]).abs().min() > 1e-2
    # as sevenn's own calculator at that fidelity
    from sevenn.calculator import SevenNetCalculator

    atoms = some.atoms(1)
    atoms.calc = SevenNetCalculator(copy.deepcopy(mf.module), file_type="model_instance", device="cpu",
                                    modal="R2SCAN")
    assert abs(atoms.get_potential_energy() - float(energies["R2SCAN"][1])) < 1e-3

    cap = capture(adapter.choose(mf, "R2SCAN"), some, ["4_equivariant_gate"], tmp_path / "c", trusted=True)
    assert cap.meta["head"] == "R2SCAN" and cap.meta["heads"] == ["R2SCAN", "PBE"]
    assert np.allclose(cap.arrays["output"], energies["R2SCAN"].numpy())
    again = model_of(cap)  # what report, utilisation and controls measure
    assert again.info["head"] == "R2SCAN"
    assert torch.allclose(adapter.predict(again, next(adapter.batches(again, some, 4))), energies["R2SCAN"])
    assert adapter.untrained(again, seed=0).info["head"] == "R2SCAN"


def test_cli_needs_a_modality_for_a_multi_fidelity_model(tmp_path, capsys):
    base = ["capture", "7net-mf-0", "--trust", "--data", "qm9:test", "--subset", "4", "--out", str(tmp_path / "c")]
    for extra, message in (([], "several fidelities (modalities): R2SCAN, PBE; choose one with --modality NAME"),
                           (["--modality", "HSE"], "valid: R2SCAN, PBE"),
                           (["--head", "PBE"], "--head is for MACE multi-head models; this is a sevenn model: "
                                               "use --modality NAME")):
        code = main(base + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "c").exists()


def test_masked_sevenn_zeroes_the_order_and_fine_tunes_on_energy_and_forces(seven, mols):
    from family_checks import masked_and_recovered

    masked_and_recovered(seven, mols, 2, forces=True)


def test_surgery_computes_what_the_masked_model_computes_and_refuses_what_sevenn_cannot_build(seven, mols):
    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions
    from irrepprobe.prune.family import check_drop

    adapter = seven.adapter
    for bad, why in (([0], "l=0 is never dropped"), ([3], "no l=3"), ([1], "only the highest orders")):
        assert why in adapter.why_not_without(seven, bad)
        with pytest.raises(IrrepprobeError, match=why):
            check_drop(seven, bad)
    small = adapter.without_orders(seven, [2])
    assert small.info["lmax"] == 1 and "2e" not in small.info["irreps_hidden"]
    assert sum(p.numel() for p in small.module.parameters()) == 599_935
    batches = list(adapter.batches(seven, mols, 8))
    full, mask, cut = (predictions(m, batches) for m in (seven, masked(seven, [2]), small))
    assert (mask - full).abs().max() > 0.1  # l=2 matters to SevenNet-0
    assert torch.allclose(cut, mask, atol=1e-4, rtol=0)  # float32 rounding on energies of ~70 eV


def test_prune_writes_a_checkpoint_sevenns_own_calculator_runs(mols, tmp_path, capsys):
    import pandas as pd
    from ase.build import bulk

    from sevenn.calculator import SevenNetCalculator

    from irrepprobe.capture.equivariance import check_equivariance

    out = tmp_path / "pruned"
    assert main(["prune", "7net-0", "--format", "sevenn", "--trust", "--drop-l", "2", "--data", "qm9:test",
                 "--subset", "10", "--steps", "2", "--md-steps", "1", "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table["model"].tolist()[:3] == ["original", "pruned, before fine-tuning", "pruned, fine-tuned"]
    assert (pd.read_csv(out / "md_speed.csv")["MD steps/s"] > 0).all()
    assert (table["parameters"].iloc[1:] == 599_935).all() and "Command: `irrepprobe prune" in (out / "report.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = SevenNetCalculator(model=str(out / "pruned.pth"), device="cpu")
    assert "2e" not in str(calc.model._modules["0_equivariant_gate"].gate.irreps_out)
    si = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    si.rattle(0.05, seed=0)
    si.calc = calc
    ours = get_adapter("sevenn").load(str(out / "pruned.pth"), trust=True)
    from irrepprobe.data.structures import from_atoms

    batch = next(ours.adapter.batches(ours, from_atoms([si.copy()]), 1))
    assert si.get_potential_energy() == pytest.approx(float(ours.adapter.predict(ours, batch)), abs=1e-3)
    assert check_equivariance(ours, mols.take(np.arange(4)), n=4)[1]["passed"]
    assert main(["prune", "7net-0", "--format", "sevenn", "--trust", "--drop-l", "0", "--data", "qm9:test"]) == 2
    assert "cannot drop l=0" in capsys.readouterr().err


def test_a_target_on_another_energy_reference_is_refused_with_a_way_through(tmp_path, capsys):
    import pandas as pd

    # SevenNet-0 predicts PBE total energies (VASP's reference); QM9's u0 is B3LYP's all-electron total energy
    argv = ["prune", "7net-0", "--format", "sevenn", "--trust", "--drop-l", "2", "--data", "qm9:test", "--subset", "10",
            "--target", "u0", "--steps", "1", "--md-steps", "0", "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another energy reference" in err[0] and "--shift-references" in err[0]
    assert not (tmp_path / "p").exists()
    assert main(argv + ["--shift-references"]) == 0
    table = pd.read_csv(tmp_path / "p" / "comparison.csv")
    # after the offsets the labels are within chemistry's range of the model, not hundreds of eV/atom away
    assert table["energy MAE vs labels"].iloc[0] < 1.0
    assert "less one offset per element" in (tmp_path / "p" / "report.md").read_text()


def test_written_checkpoint_leaves_out_traced_constants_sevenn_rebuilds(seven, tmp_path):
    import copy

    from sevenn.util import model_from_checkpoint

    model = copy.copy(seven)
    model.module = copy.deepcopy(seven.module)
    # what e3nn's generated code can hold after a copy of the model was trained (seen on SevenNet-l3i5)
    conv = model.module._modules["1_convolution"].convolution
    conv.register_buffer("_tensor_constant0", torch.zeros(3))
    path = seven.adapter.write(model, tmp_path / "m.pth")
    ck = torch.load(path, weights_only=False, map_location="cpu")
    assert not any("_tensor_constant" in k for k in ck["model_state_dict"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model_from_checkpoint(str(path)) is not None  # sevenn's own loader takes it
