"""Channel pruning (issue 39): SPECs read against the model before any work, the budget search, the Pareto
set (no model needed), then on the real SevenNet-0: surgery equal to the channel-masked model, importance
that predicts what zeroing a channel does, and prune --channels / --front through the CLI."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from irrepprobe.errors import IrrepprobeError
from irrepprobe.prune.channels import auto_counts, choose, equalised, parse_channels
from irrepprobe.prune.front import pareto

GROUPS = [("layer 1", ("a1", "b1"), "128x0e+64x1e+32x2e"), ("layer 2", ("a2", "b2"), "128x0e+64x1e+32x2e")]


def test_specs_give_counts_per_layer_and_block():
    half = parse_channels("0.5", GROUPS)
    assert half[("layer 1", "0e")] == 64 and half[("layer 2", "2e")] == 16
    assert set(parse_channels("32", GROUPS).values()) == {32}  # a count is at most each block's
    some = parse_channels("0e:64,2e:0.25", GROUPS)
    assert (some[("layer 1", "0e")], some[("layer 1", "1e")], some[("layer 1", "2e")]) == (64, 64, 8)
    assert set(parse_channels("0.5", GROUPS, equal=True).values()) == {16}
    assert ("layer 1", "2e") not in parse_channels("0.5", GROUPS, drop=[2])
    assert parse_channels("auto", GROUPS) == "auto"


@pytest.mark.parametrize("spec,message", [
    ("3e:4", "block '3e', which the model's hidden layers lack"),
    ("1.5", "a fraction kept must be in (0, 1]"),
    ("0e:0", "leaves no channel of 0e: the scalars carry the energy"),
    ("1e:0", "drop l=1 with --drop-l"),
    ("1e:100", "asks for 100 channels of 1e"),
    ("half", "must be a fraction in (0, 1] or a number of channels"),
])
def test_bad_specs_are_refused_in_one_line(spec, message):
    with pytest.raises(IrrepprobeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        parse_channels(spec, GROUPS)
    with pytest.raises(IrrepprobeError, match="prunes orders only"):
        parse_channels("0.5", [])


def _importance(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _, points, _ in GROUPS:
        for p in points:
            for b, mul in (("0e", 128), ("1e", 64), ("2e", 32)):
                rows += [{"point": p, "block": b, "channel": u, "score": float(s)} for u, s in
                         enumerate(rng.exponential(size=mul))]
    return pd.DataFrame(rows)


def _cost(counts):  # operations grow with channels x (2l+1)
    dims = {"0e": 1, "1e": 3, "2e": 5}
    return sum(k * dims[b] for (_, b), k in counts.items()) / (2 * (128 + 64 * 3 + 32 * 5))


def test_auto_meets_the_budget_with_the_least_valuable_channels_removed():
    imp = _importance()
    looser, tighter = auto_counts(imp, GROUPS, [], _cost, 0.6), auto_counts(imp, GROUPS, [], _cost, 0.3)
    assert _cost(looser) <= 0.6 and _cost(tighter) <= 0.3
    assert _cost(looser) > 0.55  # no more removed than the budget asks (one rank at a time)
    assert all(tighter[k] <= looser[k] for k in looser)
    keep = choose(imp, GROUPS, tighter)
    for p in ("a1", "b1"):  # each point keeps its own best channels
        g = imp[(imp["point"] == p) & (imp["block"] == "0e")]
        best = set(g.sort_values("score", ascending=False)["channel"].iloc[:tighter[("layer 1", "0e")]])
        assert set(keep[p]["0e"]) == best
    assert len(set(equalised(tighter).values())) <= 2  # one count per layer
    with pytest.raises(IrrepprobeError, match="with one channel per block"):
        auto_counts(imp, GROUPS, [], _cost, 0.001)


def test_pareto_keeps_the_points_nothing_beats_on_both():
    speed, err = np.array([1.0, 2.0, 3.0, 2.5]), np.array([0.1, 0.2, 0.5, 0.6])
    assert pareto(speed, err).tolist() == [True, True, True, False]


# ---------------------------------------------------------------- the real SevenNet-0

@pytest.fixture(scope="module")
def seven():
    pytest.importorskip("sevenn")
    from irrepprobe.adapters import get_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_adapter("sevenn").load("7net-0", trust=True)


@pytest.fixture(scope="module")
def data(qm9):
    from ase.build import bulk

    from irrepprobe.data.structures import from_atoms, qm9_structures

    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=0)
    return qm9_structures(qm9, torch.arange(100, 106)), from_atoms([si])


def _random_keep(model, fraction, seed=0):
    from e3nn import o3

    g = torch.Generator().manual_seed(seed)
    keep = {}
    for _, points, irreps in model.adapter.channel_groups(model):
        for p in points:
            keep[p] = {str(ir): sorted(torch.randperm(mul, generator=g)[:max(1, int(mul * fraction))].tolist())
                       for mul, ir in o3.Irreps(irreps)}
    return keep


def test_channel_surgery_computes_what_the_channel_masked_model_computes(seven, data):
    from irrepprobe.capture.equivariance import check_equivariance
    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions

    adapter = seven.adapter
    keep = _random_keep(seven, 0.5)
    for drop in ([], [2]):
        small = adapter.without_orders(seven, drop, keep)
        assert "16x2e" in small.info["irreps_layers"][1] or drop
        assert sum(p.numel() for p in small.module.parameters()) < 0.5 * sum(p.numel() for p in seven.module.parameters())
        for s in data:
            batches = list(adapter.batches(seven, s, 8))
            full, mask, cut = (predictions(m, batches) for m in (seven, masked(seven, drop, keep), small))
            assert (mask - full).abs().max() > 0.1  # the channels matter
            assert torch.allclose(cut, mask, atol=1e-4, rtol=0)
    assert check_equivariance(small, data[0].take(np.arange(3)), n=3)[1]["passed"]
    bad = dict(keep)
    bad["1_self_interaction_1"] = {**keep["1_self_interaction_1"], "0e": [0, 1]}
    with pytest.raises(IrrepprobeError, match="keeps as many channels in its self-interaction"):
        adapter.without_orders(seven, [], bad)


def test_importance_predicts_what_zeroing_a_channel_does(seven, data):
    from scipy.stats import spearmanr

    from irrepprobe.intervene import Edit, edit_hooks
    from irrepprobe.metrics.channels import channel_importance
    from irrepprobe.adapters import predict_all

    adapter = seven.adapter
    point = next(p for p in adapter.points(seven) if p.name == "2_equivariant_gate")
    batches = list(adapter.batches(seven, data[0], 6))
    imp = channel_importance(seven, batches, [point], probes=8)
    assert len(imp) == 128 + 64 + 32 and (imp["norm"] > 0).all()
    e0, f0 = predict_all(seven, batches, True)
    n_atoms = data[0].n_atoms.double()
    rows = imp[imp["block"] == "1e"].iloc[::4]  # 16 channels of the l=1 block
    de, df = [], []
    for _, r in rows.iterrows():
        hooks = edit_hooks([point], [Edit(point.name, ("1e",), "mask", channels=((int(r["channel"]),),))])
        e, f = predict_all(seven, batches, True, hooks=hooks)
        de.append(float((((e - e0)[:, 0].double() / n_atoms) ** 2).mean().sqrt()))
        df.append(float((f - f0).double().pow(2).mean().sqrt()))
    assert spearmanr(rows["energy"], de).statistic > 0.8
    assert spearmanr(rows["forces"], df).statistic > 0.7
    # first order: the predicted change is of the size of the actual one
    assert 0.3 < np.median(np.asarray(de) / rows["energy"].to_numpy()) < 3


def test_prune_channels_writes_a_model_sevenns_calculator_runs(seven, tmp_path, capsys):
    from ase.build import bulk
    from sevenn.calculator import SevenNetCalculator

    from irrepprobe.cli import main
    from irrepprobe.data.structures import from_atoms

    out = tmp_path / "c"
    assert main(["prune", "7net-0", "--format", "sevenn", "--trust", "--channels", "0e:64,1e:32", "--drop-l",
                 "2", "--data", "qm9:test", "--subset", "8", "--steps", "1", "--md-steps", "0", "--no-scratch",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    imp = pd.read_csv(out / "channels.csv")
    assert {"norm", "energy", "forces", "score"} <= set(imp.columns)
    assert "channels (kept: layer 1: 64x0e+32x1e" in (out / "report.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = SevenNetCalculator(model=str(out / "pruned.pth"), device="cpu")
    assert str(calc.model._modules["1_equivariant_gate"].gate.irreps_out) == "64x0e+32x1e"
    si = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    si.rattle(0.05, seed=0)
    si.calc = calc
    ours = seven.adapter.load(str(out / "pruned.pth"), trust=True)
    batch = next(ours.adapter.batches(ours, from_atoms([si.copy()]), 1))
    assert si.get_potential_energy() == pytest.approx(float(ours.adapter.predict(ours, batch)), abs=1e-3)
    assert table["parameters"].iloc[1] < 300_000


@pytest.mark.parametrize("argv,message", [
    (["--channels", "0"], "leaves no channel of 0e"),
    (["--channels", "0.5", "--speedup", "2"], "--speedup is the budget of --channels auto"),
    (["--channels", "auto", "--speedup", "1"], "--speedup must be above 1"),
    (["--front", "0.5 1e:0"], "leaves no channel of 1e"),
    (["--channels", "2e:8", "--drop-l", "2"], "names block '2e', whose order --drop-l removes"),
    (["--front", "drop:3e:4"], "block '3e', which the model's hidden layers lack"),
    (["--reference", "7net-0", "--drop-l", "2"], "--reference is measured beside the cuts of --front"),
    (["--front", "--drop-l", "2"], "--front names its own cuts"),
])
def test_channel_options_are_refused_before_any_work(seven, tmp_path, capsys, argv, message):
    from irrepprobe.cli import main

    out = tmp_path / "p"
    assert main(["prune", "7net-0", "--format", "sevenn", "--trust", "--data", "qm9:test", "--subset", "4",
                 *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_front_measures_each_cut_and_marks_the_pareto_set(seven, tmp_path):
    from irrepprobe.cli import main

    out = tmp_path / "f"
    assert main(["prune", "7net-0", "--format", "sevenn", "--trust", "--front", "0.5 drop:0.5", "--data",
                 "qm9:test", "--subset", "8", "--steps", "1", "--md-steps", "1", "--out", str(out)]) == 0
    table = pd.read_csv(out / "front.csv")
    assert table["model"].tolist() == ["original", "channels-0.5", "drop-l2-channels-0.5"]
    assert (table["MD steps/s"] > 0).all() and table["pareto"].dtype == bool and table["pareto"].any()
    assert table["parameters"].is_monotonic_decreasing
    assert (out / "figures" / "front.png").exists() and (out / "channels-0.5" / "report.md").exists()
