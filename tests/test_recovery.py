"""Masked models and recovery: dependence (this checkpoint) apart from recovery (the architecture)."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import smoke_config


def _ours(target, ls, seed=0, **over):
    from irrepprobe.adapters.irrepprobe.adapter import IrrepprobeAdapter
    from irrepprobe.models import build_model

    cfg = smoke_config(**{"model.ls": ls, "data.target": target, "model.avg_neighbors": 2.0, **over})
    torch.manual_seed(seed)
    net = build_model(cfg).eval()
    return IrrepprobeAdapter()._loaded(net, {"config": cfg.to_dict(), "model": net.state_dict(), "split": {}},
                                       "planted", None)


def _dimers(pairs=("HH", "CH", "OH"), n=240, seed=0):
    """Two atoms at a random orientation and distance: every invariant is a function of the distance and
    the elements, which distances alone (l = 0) carry, so l = 1 can only hold a copy of it."""
    from ase import Atoms

    from irrepprobe.data.structures import from_atoms

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        v = rng.normal(size=3)
        frames.append(Atoms(pairs[i % len(pairs)], positions=[[0, 0, 0], v / np.linalg.norm(v) * rng.uniform(0.8, 3.5)]))
    return from_atoms(frames, "dimers")


def _plant(model, k=20.0):
    """Multiply the last layer's weights from its (1o x 1o -> 0e) messages into its scalars by ``k``: the
    output then leans on l = 1, which on dimers carries only what the scalars could carry."""
    from irrepprobe.irreps.surgery import linear_index as _linear_index, messages as _messages, pre as _pre

    layer = model.module.layers[-1]
    index = _linear_index(layer.linear, _messages(layer.tp), _pre(layer.irreps_out, layer.gate))
    with torch.no_grad():
        for (src, _), (j, _) in index.items():
            if src[0] == "1o" and src[2] == "0e":
                layer.linear.weight[j] *= k
    return model


def _row(table, order, leg):
    return table[(table["order"] == order) & (table["leg"] == leg)].iloc[0]


@pytest.mark.parametrize("drop", [[1], [2], [1, 2]])
def test_a_masked_model_computes_what_the_model_with_the_orders_removed_computes(qm9, drop):
    from irrepprobe.adapters import load_model
    from irrepprobe.data.structures import qm9_structures
    from irrepprobe.examples import example_checkpoint
    from irrepprobe.metrics.recovery import masked
    from irrepprobe.metrics.utilisation import predictions

    model = load_model(example_checkpoint(), "irrepprobe")
    batches = list(model.adapter.batches(model, qm9_structures(qm9, torch.arange(300, 324)), 12))
    full, mask = predictions(model, batches), predictions(masked(model, drop), batches)
    removed = predictions(model.adapter.without_orders(model, drop), batches)
    assert (mask - full).abs().max() > 0.05  # the orders matter to this checkpoint
    assert torch.allclose(mask, removed, atol=1e-4)
    assert torch.equal(predictions(model, batches), full)  # the mask belongs to the copy


def test_an_order_that_carries_a_copy_is_depended_on_yet_recovered(tmp_path):
    from irrepprobe.metrics import recovery

    model = _plant(_ours("u0_atom", [0, 1]))
    logs = []
    table = recovery(model, _dimers(), steps=400, lr=1e-2, batch_size=60, out=tmp_path, log=logs.append)
    dep, rec, ctl = _row(table, "l=1", "dependence"), _row(table, "l=1", "recovery"), _row(table, "none", "control")
    assert dep["outcome"] == "needed" and dep["scale_free_low"] > 0.3
    assert rec["scale_free"] < dep["scale_free"] / 4 and rec["scale_free_high"] < dep["scale_free_low"]
    assert abs(ctl["scale_free"]) < rec["scale_free"]  # fine-tuning alone moves the checkpoint less
    again = recovery(model, _dimers(), steps=400, lr=1e-2, batch_size=60, out=tmp_path, log=logs.append)
    assert sum("reusing" in line for line in logs) == 2  # control and l=1, from the first run's files
    pd.testing.assert_frame_equal(table, again)


def test_a_dipole_model_without_l1_cannot_recover(qm9):
    from irrepprobe.data.structures import qm9_structures
    from irrepprobe.metrics import recovery

    model = _ours("dipole_vec", [0, 1])
    table = recovery(model, qm9_structures(qm9, torch.arange(0, 64)), steps=40, lr=1e-2, log=lambda *_: None)
    rec = _row(table, "l=1", "recovery")
    assert rec["outcome"] == "needed" and rec["scale_free_low"] > 0.5  # no l = 1 left to point the dipole with


def test_recovery_fits_labels_when_the_data_has_them(qm9):
    from irrepprobe.data.structures import qm9_structures
    from irrepprobe.metrics import recovery

    model = _ours("u0_atom", [0, 1])
    table = recovery(model, qm9_structures(qm9, torch.arange(0, 40)), label="u0_atom", steps=5, log=lambda *_: None)
    assert set(table["score"]) == {"error"} and set(table["leg"]) == {"control", "dependence", "recovery"}
    assert np.isfinite(table["raw"]).all() and (table["structures"] == 20).all()


def test_outcomes_read_raw_and_scale_free_intervals_together():
    from irrepprobe.metrics.recovery import leg_outcomes

    rows = [  # order, leg, raw interval, scale-free interval
        ("l=1", "recovery", (0.01, 0.03), (0.001, 0.004)),  # both below: dispensable
        ("l=2", "recovery", (0.08, 0.12), (0.001, 0.004)),  # raw wholly above: needed
        ("l=3", "recovery", (0.01, 0.06), (0.001, 0.004)),  # raw straddles: undecided
        ("l=4", "recovery", (np.nan, np.nan), (np.nan, np.nan)),
    ]
    table = pd.DataFrame([{"order": o, "leg": g, "raw_low": r[0], "raw_high": r[1], "scale_free_low": s[0],
                           "scale_free_high": s[1]} for o, g, r, s in rows])
    assert leg_outcomes(table, 0.05).tolist() == ["dispensable", "needed", "undecided", "no denominator"]


def test_refused_recovery_says_why(qm9):
    from irrepprobe.data.structures import qm9_structures
    from irrepprobe.errors import IrrepprobeError
    from irrepprobe.metrics import recovery

    model = _ours("u0_atom", [0, 1])
    data = qm9_structures(qm9, torch.arange(0, 10))
    with pytest.raises(IrrepprobeError, match=r"cannot mask l=2: .* \[1\]"):
        recovery(model, data, orders=[2])
    with pytest.raises(IrrepprobeError, match="at least 1"):
        recovery(model, data, steps=0)


def test_a_kept_fine_tuning_run_is_reused_only_for_the_same_model_and_data(tmp_path):
    from irrepprobe.metrics import recovery

    logs = []
    for seed, pairs in ((0, ("HH",)), (1, ("HH",)), (0, ("CH",))):  # another model, then other data
        recovery(_ours("u0_atom", [0, 1], seed=seed), _dimers(pairs, n=12), steps=1, out=tmp_path, log=logs.append)
    assert not any("reusing" in line for line in logs)
