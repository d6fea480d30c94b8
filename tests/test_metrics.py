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
from irrepprobe.metrics.scores import Scorer
from irrepprobe.metrics.utilisation import predictions
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


def test_debiased_cka_is_about_zero_for_independent_features_and_composition_is_regressed_out():
    from irrepprobe.metrics import debiased_cka
    from irrepprobe.metrics.similarity import random_baseline, residualise

    X, Y = rng.normal(size=(200, 50)), rng.normal(size=(200, 50))
    assert abs(debiased_cka(X, Y)) < 0.05
    assert linear_cka(X, Y) > 0.15  # the small-sample bias the debiased estimator removes
    Q, _ = np.linalg.qr(rng.normal(size=(50, 50)))
    assert debiased_cka(X, 2.0 * X @ Q) == pytest.approx(1.0)
    assert abs(random_baseline(X)) < 0.05
    # two featurisations that share only the element counts: similar raw, unrelated once composition is out
    C = rng.poisson(3.0, size=(200, 5)).astype(float)
    A, B = C @ rng.normal(size=(5, 30)), C @ rng.normal(size=(5, 30))
    A, B = A + 0.3 * rng.normal(size=A.shape), B + 0.3 * rng.normal(size=B.shape)
    assert debiased_cka(A, B) > 0.3
    assert abs(debiased_cka(residualise(A, C), residualise(B, C))) < 0.05


def test_control_task_shuffles_labels_only_among_molecules_of_equal_composition():
    from irrepprobe.metrics.probes import shuffle_within

    comp = np.repeat(np.eye(4), [1, 5, 7, 9], axis=0)  # four compositions, one of them a singleton
    Y = rng.normal(size=(22, 2))
    out = shuffle_within(Y, comp, seed=0)
    for k in range(4):
        rows = np.flatnonzero(comp[:, k] == 1)
        assert sorted(map(tuple, out[rows])) == sorted(map(tuple, Y[rows]))  # a permutation within the group
    assert not np.allclose(out, Y)
    assert np.allclose(out[0], Y[0])  # a singleton keeps its own label


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
    joint = table.loc["all"].reset_index().set_index(["block", "intervention"])["mae"]
    # true removal also switches off the paths from the order's spherical harmonics, which zeroing the
    # order's blocks leaves in place (l = 2 here); for l = 1 nothing else reads them
    assert abs(joint[("l=2", "removed")] - joint[("l=2", "zero")]) > 1e-4 * joint[("l=2", "zero")]
    assert joint[("l=1", "removed")] == pytest.approx(joint[("l=1", "zero")], rel=1e-6)
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


@pytest.fixture(scope="module")
def example(qm9):
    model = load_model(example_checkpoint(), "irrepprobe")
    structures = qm9_structures(qm9, torch.arange(3000, 3048))
    batches = list(model.adapter.batches(model, structures, 16))
    points = [p for p in model.adapter.points(model) if p.name.startswith("layers.")]
    return model, structures, batches, points


def test_mean_and_zero_ablation_agree_for_l_above_0_and_differ_for_l0(example):
    model, structures, batches, points = example
    base = predictions(model, batches)
    scorer = Scorer(base, structures.labels["u0_atom"][:, None], structures.n_atoms.numpy(), False)
    t = ablation(model, batches, points, scorer, orders=False, interventions=("zero", "mean"), n_boot=50)
    t = t.set_index(["point", "block", "intervention"])["utilisation"]
    for point in ("layers.0", "layers.1"):
        assert t[(point, "1o", "zero")] == pytest.approx(t[(point, "1o", "mean")], abs=1e-9)
        assert t[(point, "2e", "zero")] == pytest.approx(t[(point, "2e", "mean")], abs=1e-9)
        assert abs(t[(point, "0e", "zero")] - t[(point, "0e", "mean")]) > 0.1


def test_resampled_blocks_come_from_other_structures_rotated(example):
    from irrepprobe.capture import blocks as blocks_of
    from irrepprobe.metrics.interventions import Baselines, activations

    model, structures, batches, points = example
    acts = activations(model, batches, points)
    p = points[0]
    act = Baselines("resample", points, acts, batches, seed=1).at(0)
    b1 = next(b for b in blocks_of(p.irreps) if b.name == "1o")
    donor = act.donor(p, [b1], batches[0].n_atoms)
    mine = acts[0][p.name][:, b1.index].reshape(-1, b1.mul, 3)
    got = donor[:, b1.index].reshape(-1, b1.mul, 3)
    nxt = acts[1][p.name][:, b1.index].reshape(-1, b1.mul, 3)
    # structure 0 of batch 0 takes structure 1 of batch 1: same channel norms, other directions
    n0, start1 = int(batches[0].atom_batch.eq(0).sum()), int(batches[1].atom_batch.eq(0).sum())
    n1 = int(batches[1].atom_batch.eq(1).sum())
    rows = [start1 + k % n1 for k in range(n0)]
    assert torch.allclose(got[:n0].norm(dim=-1), nxt[rows].norm(dim=-1), atol=1e-5)
    assert not torch.allclose(got[:n0], nxt[rows], atol=1e-3)
    assert not torch.allclose(got[:n0].norm(dim=-1), mine[:n0].norm(dim=-1), atol=1e-3)


def test_resample_donors_have_the_recipients_element(example):
    """Activations that hold each atom's atomic number in its scalar block: what a resampled atom
    receives names the donor's element, which must be its own."""
    from irrepprobe.capture import blocks as blocks_of
    from irrepprobe.metrics.interventions import Baselines

    model, structures, batches, points = example
    p = points[0]
    b0 = next(b for b in blocks_of(p.irreps) if b.name == "0e")
    ends = np.cumsum([0] + [b.n_atoms for b in batches])
    z = structures.numbers
    acts = []
    for k, b in enumerate(batches):
        x = torch.zeros(b.n_atoms, p.irreps.dim)
        x[:, b0.index] = z[ends[k]:ends[k + 1], None].float()
        acts.append({p.name: x})
    for numbers, same in ((z, True), (None, False)):
        act = Baselines("resample", points, acts, batches, seed=0, numbers=numbers)
        for k in range(len(batches)):
            got = act.at(k).donor(p, [b0], batches[k].n_atoms)[:, b0.index[0]]
            mine = z[ends[k]:ends[k + 1]].float()
            assert torch.equal(got, mine) == same  # without the numbers, atom k takes atom k mod n
    # and still from another structure: the donor structure's atoms, not the recipient's own
    act = Baselines("resample", points, acts, batches, seed=0, numbers=z)
    acts_rows = [{p.name: torch.zeros(b.n_atoms, p.irreps.dim)} for b in batches]
    acts_rows[1][p.name][:, b0.index[0]] = torch.arange(batches[1].n_atoms, dtype=torch.float32)
    act.acts = acts_rows
    rows = act.at(0).donor(p, [b0], batches[0].n_atoms)[:, b0.index[0]].long()
    meant = (batches[0].atom_batch + 1) % batches[1].n_structures  # the designated donor structure
    z0, z1 = z[: ends[1]], z[ends[1]: ends[2]]
    there = torch.tensor([bool(((batches[1].atom_batch == s) & (z1 == e)).any()) for s, e in zip(meant, z0)])
    assert there.float().mean() > 0.9  # a few atoms' element is missing there: taken from elsewhere in the batch
    assert torch.equal(batches[1].atom_batch[rows][there], meant[there])


def test_scale_free_score_does_not_change_when_the_output_is_scaled():
    from irrepprobe.metrics.interventions import paired_bootstrap

    rng = np.random.default_rng(0)
    target = rng.normal(size=(200, 1))
    comp = target + rng.normal(size=(200, 1))
    base = torch.tensor(target + 0.2 * rng.normal(size=(200, 1)))
    ablated = torch.tensor(target + 0.5 * rng.normal(size=(200, 1)))
    scores = []
    for c in (1.0, 37.0):
        s = Scorer(c * base, c * target, np.full(200, 10), False, c * comp)
        scores.append(paired_bootstrap(s.base_per, s.per_structure(c * ablated), s.scale, 200, 0))
    assert np.allclose(scores[0], scores[1])
    assert scores[0][1] < scores[0][0] < scores[0][2] and 0 < scores[0][0] < 1


def test_blocks_the_readout_cannot_read_are_unreachable(example):
    from irrepprobe.metrics import reachable

    model, structures, _, points = example
    reach = reachable(model, structures, points, n=8)
    assert not reach[("layers.2", "1o")] and not reach[("layers.2", "2e")]
    assert reach[("layers.2", "0e")] and reach[("layers.1", "1o")] and reach[("layers.0", "2e")]


def test_update_and_stream_are_told_apart_on_a_planted_model(example):
    """Layer 1's own update to 2e planted to zero: ablating layers.1.update 2e changes nothing, ablating
    the stream (which still holds what layer 0 wrote into 2e) does."""
    model, structures, batches, _ = example
    layer = model.module.layers[1]
    with torch.no_grad():
        for lin in (layer.linear, layer.self_connection):
            for _, ins, w in lin.weight_views(yield_instruction=True):
                if lin.irreps_out[ins.i_out].ir == o3.Irrep("2e"):
                    w.zero_()
    points = [p for p in model.adapter.points(model) if p.name in ("layers.1.update", "layers.1")]
    assert [p.role for p in points] == ["update", "stream"]
    base = predictions(model, batches)
    scorer = Scorer(base, structures.labels["u0_atom"][:, None], structures.n_atoms.numpy(), False)
    t = ablation(model, batches, points, scorer, orders=False, n_boot=50).set_index(["point", "block"])
    assert t.loc[("layers.1.update", "2e"), "utilisation"] == pytest.approx(0, abs=1e-9)
    assert t.loc[("layers.1", "2e"), "utilisation"] > 0.05
    assert t.loc[("layers.1.update", "0e"), "utilisation"] > 0.05


def test_paired_difference_finds_a_planted_gain_and_the_pairing_narrows_it():
    from irrepprobe.metrics.paired import paired_difference, verdict

    rng = np.random.default_rng(0)
    hard = rng.gamma(1.0, 1.0, 1500)  # molecules differ a lot in difficulty; both configs see the same ones
    b = hard + rng.normal(0, 0.05, (3, 1500))
    a = 0.95 * hard + rng.normal(0, 0.05, (3, 1500))  # 5% better on every molecule
    paired = paired_difference(np.abs(a), np.abs(b), n_boot=500)
    assert paired["ci_high"] < 0 and verdict(paired["ci_low"], paired["ci_high"], "negative") == "reproduced"
    assert paired["rel_low"] < -0.05 * 0.5 and paired["rel_high"] < 0
    unpaired = paired_difference(np.abs(a)[:, rng.permutation(1500)], np.abs(b), n_boot=500)
    assert (paired["ci_high"] - paired["ci_low"]) < 0.5 * (unpaired["ci_high"] - unpaired["ci_low"])


def test_paired_difference_of_equal_configs_covers_zero_and_seed_spread_widens_it():
    from irrepprobe.metrics.paired import mae_interval, paired_difference, verdict

    rng = np.random.default_rng(1)
    hard = rng.gamma(1.0, 1.0, 1000)
    same = [np.abs(hard + rng.normal(0, 0.1, (3, 1000))) for _ in range(2)]
    r = paired_difference(*same, n_boot=500)
    assert r["ci_low"] < 0 < r["ci_high"] and r["p"] > 0.05
    assert verdict(r["ci_low"], r["ci_high"], "negative") == "not decidable at this scale"
    assert verdict(0.1, 0.2, "negative") == "not reproduced"
    # seeds that disagree by a whole offset: the interval has to carry that spread
    spread = np.abs(hard + np.array([[0.0], [0.3], [0.6]]))
    tight, wide = mae_interval(same[0], n_boot=500), mae_interval(spread, n_boot=500)
    assert (wide["ci_high"] - wide["ci_low"]) > 3 * (tight["ci_high"] - tight["ci_low"])
    with pytest.raises(ValueError, match="same molecules"):
        paired_difference(same[0], same[1][:, :10])
