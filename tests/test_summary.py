"""The report's first screen on what goes wrong before any verdict: a model that fails the equivariance
check (tests/broken_nets.py), a label on another reference than the model's (a planted per-element offset
on real predictions; SevenNet-0 against QM9's B3LYP energies), and the words of the order and block lines."""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from irrepprobe.adapters import load_model, predict_all
from irrepprobe.capture import capture
from irrepprobe.capture.run import OFFSET_SHARE, RAW_OVER_SPREAD, reference_check
from irrepprobe.data import make_split
from irrepprobe.data.structures import qm9_structures, read_structures, write_extxyz
from irrepprobe.examples import example_checkpoint
from irrepprobe.report.summary import _order_lines, header, read_first

# B3LYP-like atomic energies (eV): what separates QM9's total energies from a PBE potential's, mostly
OFFSETS = {1: -13.6, 6: -1029.8, 7: -1485.3, 8: -2042.6, 9: -2713.5}
NO_CHECKS = pd.DataFrame(columns=["check", "quantity", "message"])


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def leak_report(qm9, tmp_path_factory):
    from irrepprobe.study import make_report

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("leak")
    model = load_model("broken_nets:position_leak", "e3nn")
    cap = capture(model, qm9_structures(qm9, torch.arange(100, 124)), None, out / "cap", batch_size=8,
                  check_equivariance=4)
    return make_report(cap, out=out / "report", device="cpu", controls=1, map_method="pca", ablation_molecules=24,
                       log=lambda *a: None)


def test_a_failed_equivariance_check_leads_the_summary_with_its_numbers_and_cause(leak_report):
    first = (leak_report["out"] / "report.md").read_text().split("<details>")[0]
    lines = first.splitlines()
    failed = next(x for x in lines if "**The model failed the equivariance check**" in x)
    assert "on 4 randomly rotated structures" in failed and "its output changes by" in failed
    assert re.search(r"output changes by [\d.]+%", failed) and re.search(r"blocks by up to [\d.]+%", failed)
    assert "Likely cause: mp.layers.1 0e is the first block whose invariants change" in failed
    assert "not meaningful for this model" in failed
    orders = [x for x in lines if x.startswith("- **l=")]
    assert len(orders) == 2 and all(lines.index(failed) < lines.index(x) for x in orders)
    for x in orders:  # each order verdict says it is not meaningful here, and names the leg it rests on
        assert re.match(r"- \*\*l=\d: [^*]+\(dependence: \w+\), not meaningful: the model is not equivariant\*\*", x), x
    blocks = next(x for x in lines if x.startswith("- **Blocks**"))
    pruning = next(x for x in lines if x.startswith("- **A pruning step would drop**"))
    assert "not meaningful" in blocks and "not meaningful" in pruning


def test_an_unreachable_block_has_no_dependence_outcome(leak_report):
    table = leak_report["verdict"]["table"]
    cut = table["verdict"] == "unreachable by construction"
    assert cut.any() and (table.loc[cut, "dependence"] == "unreachable").all()
    assert set(table.loc[~cut, "dependence"]) <= {"needed", "dispensable", "undecided", "no denominator"}
    util = leak_report["tables"]["utilisation"]
    assert (util.loc[~util["reachable"].astype(bool), "dependence"] == "unreachable").all()
    md = (leak_report["out"] / "report.md").read_text()
    assert "| unreachable by construction | unreachable |" in md.replace("  ", " ") or \
        re.search(r"unreachable by construction\s*\|\s*unreachable\s*\|", md)


def test_an_order_line_names_its_leg_and_never_contradicts_itself():
    legs = pd.DataFrame({"order": ["l=1", "l=1", "l=2"], "leg": ["dependence", "recovery", "dependence"],
                         "outcome": ["needed", "dispensable", "undecided"]})
    orders = pd.DataFrame([
        {"order": "l=1", "dependence": "energy 40.0% [30.0, 50.0]: needed",
         "recovery": "energy 1.0% [0.2, 2.0]: dispensable", "necessity": "not measured",
         "verdict": "dispensable", "rests on": "recovery"},
        {"order": "l=2", "dependence": "energy 4.0% [1.0, 9.0]: undecided", "recovery": "not measured",
         "necessity": "not measured", "verdict": "undecided", "rests on": "dependence"}])
    one, two = _order_lines({"orders": orders}, None, legs, 0.05)
    assert one.startswith("**l=1: the architecture does not need it (recovery: dispensable)**")
    assert "energy 1.0% [0.2, 2.0]" in one and "Beside it, dependence: needed" in one
    assert two.startswith("**l=2: undecided whether this checkpoint depends on it (dependence: undecided)**")
    assert "whether the architecture needs it: not measured" in two
    assert "needed" not in two.split("**")[1].replace("(dependence: undecided)", "")  # no "needed" then "not measured"


def planted(structures, prediction, offsets, noise, seed=0):
    """``structures`` whose u0_atom is the model's own ``prediction`` plus a per-element offset and noise."""
    rng = np.random.default_rng(seed)
    shift = np.array([offsets.get(int(z), 0.0) for z in structures.numbers.tolist()])
    per = np.zeros(len(structures))
    np.add.at(per, structures.structure_of_atom().numpy(), shift)
    out = structures.take(np.arange(len(structures)))
    out.labels["u0_atom"] = prediction + per + noise * rng.normal(size=len(structures))
    return out


def test_a_planted_per_element_offset_is_another_reference(qm9, tmp_path, capsys, one_thread):
    model = load_model(str(example_checkpoint()), "irrepprobe")
    molecules = qm9_structures(qm9, make_split(len(qm9), seed=0)["test"][:40])
    pred = predict_all(model, list(model.adapter.batches(model, molecules, 64)))[0].numpy()[:, 0]
    s = read_structures(write_extxyz(planted(molecules, pred, OFFSETS, 0.02), tmp_path / "offset.xyz"))

    cap = capture(model, s, None, tmp_path / "a", target="u0_atom", check_equivariance=0)
    ref = cap.meta["reference"]
    assert ref["other_reference"] and not ref["kept"] and ref["explained"] > 0.99
    assert cap.meta["target"] is None and "target" not in cap.arrays and "error" not in cap.arrays
    assert np.allclose(ref["offsets"], [OFFSETS[z] for z in ref["elements"]], atol=0.05)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("label u0_atom looks like another reference: a per-element offset")
    assert "--target u0_atom keeps the label" in out[0]
    assert any(x.startswith("Label u0_atom looks like another reference") for x in header(cap.meta, pd.DataFrame()))
    assert read_first(cap.meta, pd.DataFrame(), NO_CHECKS) == []

    named = capture(model, s, None, tmp_path / "b", target="u0_atom", check_equivariance=0, target_named=True)
    assert named.meta["target"] == "u0_atom" and "error" in named.arrays and named.meta["reference"]["kept"]
    assert "kept as named (--target), though a per-element offset explains" in capsys.readouterr().out
    first = read_first(named.meta, pd.DataFrame(), NO_CHECKS)
    assert len(first) == 1 and first[0].startswith("**Label u0_atom is probably on another reference** (kept")

    # the model's own predictions plus noise, and the genuine label: the model's own error, kept silently
    for labels in (planted(molecules, pred, {}, 0.02), molecules):
        kept = capture(model, labels, None, tmp_path / "c", target="u0_atom", check_equivariance=0)
        assert kept.meta["target"] == "u0_atom" and "error" in kept.arrays
        assert not kept.meta["reference"]["other_reference"] and kept.meta["reference"]["kept"]
        assert capsys.readouterr().out == ""


def test_the_reference_rule_needs_structures_beyond_its_fit():
    rng = np.random.default_rng(1)
    comp = rng.integers(0, 5, size=(8, 4)).astype(float)
    y = comp @ np.array([-13.6, -1029.8, -1485.3, -2042.6])
    assert reference_check(y, np.zeros(8), comp, "e") is None  # 8 structures, 4 offsets: too few to say
    comp = rng.integers(0, 5, size=(40, 4)).astype(float)
    y = comp @ np.array([-13.6, -1029.8, -1485.3, -2042.6]) + rng.normal(size=40)
    pred = y - comp @ np.array([-10.0, -1000.0, -1400.0, -2000.0]) + 0.01 * rng.normal(size=40)
    ref = reference_check(y, pred, comp, "e")
    assert ref["other_reference"] and ref["residual_mae"] < OFFSET_SHARE * ref["raw_mae"]
    assert ref["raw_mae"] >= RAW_OVER_SPREAD * ref["label_spread"]
    assert not reference_check(y, y + 0.05 * rng.normal(size=40), comp, "e")["other_reference"]
    # a model that learned nothing (predicts zero): its error is all composition too, but it follows nothing
    # of the label beyond composition: a bad model, not another reference
    blank = reference_check(y, np.zeros(40), comp, "e")
    assert blank["residual_mae"] < OFFSET_SHARE * blank["raw_mae"] and not blank["other_reference"]
    assert reference_check(np.c_[y, y], np.c_[y, y], comp, "e") is None  # not one scalar per structure


def test_sevenn_on_qm9_b3lyp_energies_scores_its_own_prediction(qm9, tmp_path, capsys, one_thread):
    """The reported case: QM9's B3LYP total energies as `energy`, given to SevenNet-0 (PBE)."""
    pytest.importorskip("sevenn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seven = load_model("7net-0", "sevenn", trust=True)
        molecules = qm9_structures(qm9, torch.arange(0, 400, 10))
        molecules.labels["energy"] = molecules.labels["u0"]
        cap = capture(seven, molecules, None, tmp_path / "cap", target="energy", check_equivariance=0)
    ref = cap.meta["reference"]
    assert ref["other_reference"] and cap.meta["target"] is None and "error" not in cap.arrays
    assert ref["raw_mae"] > 1000 and ref["residual_mae"] < 1  # eV: B3LYP totals vs PBE, an offset per element
    assert "label energy looks like another reference" in capsys.readouterr().out
