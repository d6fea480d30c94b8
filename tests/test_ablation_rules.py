"""The statistics behind a fast report: the sequential rule's error rate, and denominators that
degenerate (a model no better than its composition fit) never turning into findings."""
import numpy as np
import pytest
import torch

from irrepprobe.adapters import load_model
from irrepprobe.capture import capture
from irrepprobe.data.structures import qm9_structures
from irrepprobe.examples import example_checkpoint
from irrepprobe.metrics import denominator_checks, utilisation
from irrepprobe.metrics.ablation import looks_for, sequential_stop
from irrepprobe.prune import orders_to_drop


class Paired:
    """Per-structure errors of an unablated model, with a fixed scale-free denominator."""

    def __init__(self, base):
        self.base_per = base

    def scale(self, rows):
        return 1.0


def _early_stops(effect, reps=200, n=512, level_free=False, seed=0, noise=0.4):
    rng = np.random.default_rng(seed)
    stops = []
    for r in range(reps):
        base = rng.gamma(2.0, 0.5, n)
        ablated = base + effect + rng.normal(0, noise, n)  # the mean shift over the scale is ``effect``
        if level_free:  # the naive rule: a 95% interval at every look
            stops.append(sequential_stop([Paired(base)], [ablated], 64, alpha=0.05 * len(looks_for(n, 64)),
                                         n_boot=200, seed=r))
        else:
            stops.append(sequential_stop([Paired(base)], [ablated], 64, n_boot=200, seed=r))
    return np.asarray(stops)


def test_looks_double_from_the_first_and_end_at_all_structures():
    assert looks_for(500, 64) == [64, 128, 256, 500]
    assert looks_for(500, None) == [500] and looks_for(50, 64) == [50]


def test_sequential_rule_stops_on_the_wrong_side_at_most_alpha_of_the_time():
    """A block exactly at the threshold: any early stop calls it used when it is not above the
    threshold. Bonferroni over the four looks keeps that below 5% (here within two standard errors of
    200 runs); a 95% interval at every look, the naive rule, does not."""
    at_threshold = _early_stops(0.05)
    rate = float((at_threshold < 512).mean())
    assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)
    naive = float((_early_stops(0.05, level_free=True) < 512).mean())
    assert naive > rate


def test_sequential_rule_stops_early_when_the_answer_is_clear():
    clear = _early_stops(0.5, reps=40)
    assert (clear == 64).mean() >= 0.95
    unused = _early_stops(0.0, reps=40, noise=0.1)
    assert (unused == 512).all()  # an unused verdict always rests on every structure


@pytest.fixture(scope="module")
def wrong_label(qm9, tmp_path_factory):
    """The example U0 model measured against the total energy U0 (not the atomisation energy it was
    trained on): off by thousands of eV that a fit on element counts removes almost entirely, so the
    model is far worse than the composition fit."""
    model = load_model(example_checkpoint(), "irrepprobe")
    structures = qm9_structures(qm9, torch.arange(100, 160))
    assert "u0" in structures.labels
    return capture(model, structures, out=tmp_path_factory.mktemp("w") / "cap", target="u0", check_equivariance=0,
                   target_named=True)  # named on purpose: left to itself, capture sets it aside (another reference)


def test_a_model_worse_than_the_composition_fit_gets_no_scale_free_number_and_no_verdict(wrong_label):
    table = utilisation(wrong_label, molecules=60, device="cpu", batch_size=30, n_boot=50)
    checks = denominator_checks(wrong_label, table)
    assert "no better than the baseline" in set(checks["check"])
    assert table["scale_free"].isna().all() and table["scale_free_high"].isna().all()
    assert table["utilisation"].notna().all()  # the raw relative change of the MAE still means something
    assert table.loc[table["reachable"], "used"].all()  # nothing called unused on no evidence
    assert orders_to_drop(table, 0.05) == []


def test_a_collapsed_block_is_degenerate_not_unused(qm9, tmp_path):
    """The example model with the 2e block leaving layers 0 and 1 scaled by 1e-20 (a forward hook of the
    model's own, as a product that collapsed in training would leave it): norm shares of ~1e-40 and no
    first-order effect: degenerate; no block of another order is."""
    from irrepprobe.capture import blocks as blocks_of
    from irrepprobe.metrics import grad_x_activation
    from irrepprobe.metrics.utilisation import degenerate, predictions

    model = load_model(example_checkpoint(), "irrepprobe")
    points = {p.name: p for p in model.adapter.points(model)}
    modules = dict(model.module.named_modules())
    for name in ("layers.0", "layers.1"):
        p = points[name]
        cols = next(b.index for b in blocks_of(p.irreps) if b.name == "2e")

        def collapse(module, args, out, p=p, cols=cols):
            x = p.read(out).clone()
            x[:, cols] = x[:, cols] * 1e-20
            return p.write(out, x)
        modules[p.module].register_forward_hook(collapse)
    structures = qm9_structures(qm9, torch.arange(200, 240))
    cap = capture(model, structures, ["layers.0", "layers.1", "layers.2"], tmp_path / "cap", target="u0_atom",
                  check_equivariance=0)
    batches = list(model.adapter.batches(model, structures, 20))
    chosen = [points[n] for n in ("layers.0", "layers.1", "layers.2")]
    table = grad_x_activation(model, batches, chosen)
    mae = float((predictions(model, batches)[:, 0].numpy() - structures.labels["u0_atom"]).__abs__().mean())
    table["grad_x_activation_relative"] = table["grad_x_activation"] / mae
    flags = dict(zip(zip(table["point"], table["block"]), degenerate(cap, table)))
    assert flags[("layers.0", "2e")] and flags[("layers.1", "2e")]
    assert not any(v for k, v in flags.items() if k[1] != "2e")


def test_three_outcomes_follow_the_intervals():
    import pandas as pd

    from irrepprobe.metrics import outcomes

    t = pd.DataFrame({"point": ["a", "a", "b", "b", "c", "d"], "block": ["0e"] * 6,
                      "scale_free_low": [0.01, 0.08, 0.01, 0.02, 0.01, np.nan],
                      "scale_free_high": [0.04, 0.20, 0.04, 0.03, 0.09, np.nan]})
    assert list(outcomes(t, 0.05)) == ["needed", "needed", "dispensable", "dispensable", "undecided",
                                       "no denominator"]


def test_a_block_reached_only_through_rounding_is_unreachable(qm9):
    """layers.0's 2e damped by 1e-14 where layers.1 reads it: its gradients sit 14 orders of magnitude
    below the others, float rounding rather than a path to the output."""
    from irrepprobe.capture import blocks as blocks_of
    from irrepprobe.metrics import reachable

    model = load_model(example_checkpoint(), "irrepprobe")
    points = {p.name: p for p in model.adapter.points(model)}
    cols = next(b.index for b in blocks_of(points["layers.0"].irreps) if b.name == "2e")

    def damp(module, args):
        x = args[0].clone()
        x[:, cols] = x[:, cols] * 1e-14
        return (x, *args[1:])
    model.module.layers[1].register_forward_pre_hook(damp)
    reach = reachable(model, qm9_structures(qm9, torch.arange(200, 216)), [points["layers.0"], points["layers.1"]])
    assert not reach[("layers.0", "2e")]
    assert reach[("layers.0", "1o")] and reach[("layers.1", "2e")]


def test_the_threshold_applies_to_the_raw_change_of_the_error_too():
    """A model far better than its composition fit: a block whose share stays below 5% while the error
    grows by 20% is not unused; without a scale-free interval the raw one alone says nothing."""
    import pandas as pd

    from irrepprobe.metrics import outcomes, verdicts

    t = pd.DataFrame({"point": ["a", "b", "c", "d"], "block": ["1o"] * 4, "reachable": True,
                      "scale_free_low": [0.01, 0.01, 0.01, np.nan], "scale_free_high": [0.03, 0.03, 0.03, np.nan],
                      "utilisation_low": [0.15, 0.02, 0.01, 0.0], "utilisation_high": [0.25, 0.08, 0.04, 0.01]})
    assert list(outcomes(t, 0.05)) == ["needed", "undecided", "dispensable", "no denominator"]
    assert list(verdicts(t, 0.05)) == [True, True, False, True]
    assert list(verdicts(t.drop(columns=["utilisation_low", "utilisation_high"]), 0.05)) == [False, False, False, True]
