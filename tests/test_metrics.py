import numpy as np
import pandas as pd
import pytest
import torch
from e3nn import o3

from conftest import smoke_config
from irrepprobe.adapters import load_model
from irrepprobe.capture import capture_checkpoint
from irrepprobe.data.structures import qm9_structures
from irrepprobe.errors import IrrepprobeError
from irrepprobe.examples import example_checkpoint
from irrepprobe.metrics import (THRESHOLD, EquivariantProbe, ablation, cka_matrix, cv_r2, grad_x_activation,
                                linear_cka, norms, participation_ratio, ridge_probe)
from irrepprobe.metrics.features import beyond_composition
from irrepprobe.metrics.utilisation import Scorer, predictions
from irrepprobe.train import train

rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("met")
    train(smoke_config(**{"train.epochs": 2, "model.ls": [0, 1, 2]}), out, progress=False, log=lambda *a: None)
    return out / "best.pt"


def test_ridge_probe_finds_a_planted_linear_signal_and_not_noise():
    X = rng.normal(size=(400, 12))
    signal = X @ rng.normal(size=12) + 0.05 * rng.normal(size=400)
    noise = rng.normal(size=400)
    scores = cv_r2(ridge_probe(), X, np.c_[signal, noise])
    assert scores[0] > 0.99
    assert abs(scores[1]) < 0.05


def test_equivariant_probe_recovers_a_planted_signal_and_rotates_with_its_input():
    for irrep in (o3.Irrep("1o"), o3.Irrep("2e")):
        V = rng.normal(size=(300, 6, irrep.dim))
        w = rng.normal(size=6)
        Y = np.einsum("ncd,c->nd", V, w) + 0.01 * rng.normal(size=(300, irrep.dim))
        probe = EquivariantProbe().fit(V, Y)
        assert probe.score(V, Y) > 0.99
        assert np.allclose(probe.coef_, w, atol=0.02)
        D = irrep.D_from_matrix(o3.rand_matrix().double()).numpy()
        assert np.allclose(probe.predict(V @ D.T), probe.predict(V) @ D.T, atol=1e-10)
        assert cv_r2(EquivariantProbe(), V, rng.normal(size=Y.shape))[0] < 0.05
    with pytest.raises(IrrepprobeError, match="channels"):
        EquivariantProbe().fit(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)))


def test_composition_residual_removes_what_element_counts_explain():
    counts = rng.integers(0, 9, size=(200, 5)).astype(float)
    extensive = counts @ np.array([-13.6, -1029.0, -1485.0, -2042.0, -2713.0]) + 3.0
    other = rng.normal(size=200)
    res = beyond_composition(pd.DataFrame({"e": extensive, "o": other}), counts)
    assert np.abs(res["e"]).max() < 1e-8
    assert np.corrcoef(res["o"], other)[0, 1] > 0.95


def test_cka_is_one_for_a_layer_with_itself_and_ignores_rotation_and_scale():
    X = rng.normal(size=(200, 8))
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 3.0 * X @ Q) == pytest.approx(1.0)
    assert linear_cka(X, rng.normal(size=(200, 8))) < 0.2


def test_participation_ratio_counts_directions():
    assert participation_ratio(np.c_[rng.normal(size=500), np.zeros(500)]) == pytest.approx(1.0)
    assert participation_ratio(rng.normal(size=(5000, 4))) == pytest.approx(4.0, rel=0.05)


def test_ablating_a_block_the_readout_ignores_is_unused_and_its_l0_block_is_not(qm9):
    model = load_model(example_checkpoint(), "irrepprobe")  # a trained U0 model, L=[0,1,2], 3 layers
    points = [p for p in model.adapter.points(model) if p.name.startswith("layers.")]
    structures = qm9_structures(qm9, torch.arange(2000, 2060))
    batches = list(model.adapter.batches(model, structures, 30))
    base = predictions(model, batches)
    scorer = Scorer(base, structures.labels["u0_atom"][:, None], structures.n_atoms.numpy(), False)
    table = ablation(model, batches, points, scorer).set_index(["point", "block"])
    last = "layers.2"  # the readout is linear in 0e: the last layer's l > 0 blocks feed nothing
    assert abs(table.loc[(last, "1o"), "utilisation"]) < 1e-6
    assert abs(table.loc[(last, "2e"), "utilisation"]) < 1e-6
    assert table.loc[(last, "0e"), "utilisation"] > THRESHOLD
    assert ("all", "l=1") in table.index and ("all", "l=2") in table.index
    assert (table["score"] == "error").all()
    gxa = grad_x_activation(model, batches, points).set_index(["point", "block"])["grad_x_activation"]
    assert gxa[(last, "1o")] == 0 and gxa[(last, "0e")] > 0
    # without a label: the shift of the prediction, zero for the ignored blocks, large for the used one
    shift = ablation(model, batches, points, Scorer(base, None, structures.n_atoms.numpy(), True))
    shift = shift.set_index(["point", "block"])
    assert (shift["score"] == "shift").all()
    assert abs(shift.loc[(last, "1o"), "utilisation"]) < 1e-6
    assert shift.loc[(last, "0e"), "utilisation"] > THRESHOLD


def test_norms_table_has_effective_ranks_within_bounds(ckpt, tmp_path):
    cap = capture_checkpoint(ckpt, out=tmp_path / "c", device="cpu")
    df = norms(cap)
    assert ((df["effective_rank"] >= 1 - 1e-9) & (df["effective_rank"] <= df["mul"] + 1e-9)).all()
    cka = cka_matrix(cap)
    assert np.allclose(np.diag(cka.to_numpy()), 1.0)
