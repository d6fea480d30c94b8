import pytest
import torch
from e3nn import o3

from irrepprobe.data import collate, target_values
from irrepprobe.data.graphs import MoleculeDataset
from irrepprobe.models import PRESETS, build_model, num_parameters, preset


def _batch(qm9, target, n=6):
    y = target_values(qm9, target)
    return collate([MoleculeDataset(qm9, torch.arange(20, 20 + n), y)[k] for k in range(n)])


def _rotated(batch, R):
    b = batch.clone()
    b.pos = batch.pos @ R.T
    return b


def _model(name, target, **sets):
    cfg = preset(name)
    cfg.set("data.target", target)
    cfg.set("model.avg_neighbors", 8.0)
    for k, v in sets.items():
        cfg.set(k, v)
    torch.manual_seed(0)
    model = build_model(cfg.validate()).double().eval()
    with torch.no_grad():  # a non-trivial output transform, as after fitting
        model.scale.fill_(2.0)
        model.atom_ref[:, 0] = torch.arange(5.0) if model.irreps_out[0][1].l == 0 else 0
    return model


CASES = [(p, "u0_atom") for p in PRESETS] + [
    ("lee", "dipole_vec"), ("miller-l1", "dipole_vec"), ("lee", "polarizability"), ("smoke", "dipole_vec")]


@pytest.mark.parametrize("name,target", CASES)
def test_presets_are_equivariant(qm9, name, target):
    model = _model(name, target)
    batch = _batch(qm9, target)
    batch.pos = batch.pos.double()
    out = model(batch)
    assert out.abs().max() > 1e-3
    torch.manual_seed(1)
    for R in [o3.rand_matrix().double(), -o3.rand_matrix().double()]:  # rotation, rotation + inversion
        D = model.irreps_out.D_from_matrix(R)
        # e3nn keeps its Clebsch-Gordan constants in float32: equal to ~1e-7 relative in float64
        assert torch.allclose(model(_rotated(batch, R)), out @ D.T, atol=1e-5 * out.abs().max().item())


def test_l1_output_is_a_vector_that_flips_under_inversion(qm9):
    model = _model("lee", "dipole_vec")
    batch = _batch(qm9, "dipole_vec")
    batch.pos = batch.pos.double()
    out = model(batch)
    flipped = model(_rotated(batch, -torch.eye(3, dtype=torch.float64)))
    assert torch.allclose(flipped, -out, atol=1e-5 * out.abs().max().item())


def test_noncontiguous_orders(qm9):
    model = _model("lee", "u0_atom", **{"model.ls": [0, 3, 4], "model.layers": 2})
    irs = {ir.l for _, ir in model.layers[-1].irreps_out}
    assert irs == {0, 3, 4}
    assert {ir.l for _, ir in model.irreps_sh} == {0, 3, 4}
    batch = _batch(qm9, "u0_atom")
    batch.pos = batch.pos.double()
    R = o3.rand_matrix().double()
    out = model(batch)
    assert torch.allclose(model(_rotated(batch, R)), out, atol=1e-5 * out.abs().max().item())


def test_mul_per_order_and_both_parities():
    model = _model("lee", "u0_atom", **{"model.mul": {0: 8, 1: 4, 2: 2}, "model.parity": "both"})
    assert model.layers[-1].irreps_out == o3.Irreps("8x0e+8x0o+4x1o+4x1e+2x2e+2x2o").sort().irreps.simplify()


def test_every_layer_exposes_irreps():
    model = _model("lee", "u0_atom")
    for name in ["embedding", "layers.0", "layers.1", "layers.2", "readout"]:
        mod = model.get_submodule(name)
        assert isinstance(mod.irreps_in, o3.Irreps) and isinstance(mod.irreps_out, o3.Irreps)
    assert "layers.2" in model.summary() and f"{num_parameters(model):,}" in model.summary()


def test_miller_presets_have_near_matched_parameters():
    n1 = num_parameters(build_model(preset("miller-l1")))
    n0 = num_parameters(build_model(preset("miller-l0")))
    print(f"miller-l1 {n1:,} parameters, miller-l0 {n0:,}")
    assert abs(n0 - n1) / n1 < 0.05
    assert {ir.l for _, ir in build_model(preset("miller-l0")).layers[-1].irreps_out} == {0}


def test_impossible_output_is_refused():
    from irrepprobe.errors import IrrepprobeError

    with pytest.raises(IrrepprobeError, match="no 1o block"):
        _model("miller-l0", "dipole_vec")
