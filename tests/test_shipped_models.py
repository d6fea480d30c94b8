"""Every SevenNet checkpoint the sevenn wheel ships, at each of its fidelities, through the default commands
as a user runs them (capture, report without and with ``--recovery``, prune) on a few QM9 molecules, and
its surgery (the model without its highest order) equal to the masked model, also as a file that sevenn's
own calculator runs. The real checkpoints and molecules, no mocks; the smallest budgets the CLI allows.

The other families' test models go through the same commands in their own files (test_open_world: capture
and report of 7net-0 and the e3nn example network; test_adapter_mace and test_adapter_nequip: capture and
prune of their test models)."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("sevenn")

from irrepprobe.cli import main  # noqa: E402

# (pretrained name, fidelity): each checkpoint file the wheel ships, at each fidelity it was trained on
CASES = [("7net-0", None), ("7net-0_22May2024", None), ("7net-l3i5", None),
         ("7net-mf-0", "PBE"), ("7net-mf-0", "R2SCAN")]
IDS = [name + (f"-{fid}" if fid else "") for name, fid in CASES]
SUBSET = 12  # a report's 5-fold probes need at least 10 molecules
ABLATION = 8  # molecules each ablation and gradient x activation run on
PRUNE_SUBSET = 10


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _fidelity(case) -> list[str]:
    name, fid = case
    return ["--modality", fid] if fid else []


def _load(case):
    from irrepprobe.adapters import load_model

    name, fid = case
    return _quiet(load_model, name, "sevenn", trust=True, head=fid)


def _calculator(path, fid):
    from sevenn.calculator import SevenNetCalculator

    return _quiet(SevenNetCalculator, model=str(path), device="cpu", modal=fid)


def test_every_checkpoint_the_wheel_ships_is_covered_at_each_fidelity():
    import sevenn.util as su

    from irrepprobe.adapters.sevenn.io import resolve_name

    shipped = {}
    for name in su.get_available_pretrained_models():
        path, _ = resolve_name(name)  # None: a checkpoint the wheel does not ship (downloaded on demand)
        if path is not None:
            shipped.setdefault(path, name)
    covered = {}
    for name, fid in CASES:
        covered.setdefault(resolve_name(name)[0], set()).add(fid)
    assert set(shipped) == set(covered), f"shipped: {sorted(shipped.values())}"
    for path, fids in covered.items():
        modal = torch.load(path, map_location="cpu", weights_only=False)["config"].get("_modal_map") or {}
        assert fids == (set(modal) or {None}), path


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request):
    return request.param


@pytest.fixture(scope="module")
def captured(case, tmp_path_factory, qm9):
    """The case's capture through the CLI on the first SUBSET molecules of QM9's test split."""
    out = tmp_path_factory.mktemp("shipped") / "cap"
    assert main(["capture", case[0], "--format", "sevenn", *_fidelity(case), "--trust", "--data", "qm9:test",
                 "--subset", str(SUBSET), "--check-equivariance", "2", "--out", str(out)]) == 0
    return out


def test_default_report_then_with_recovery(case, captured, capsys):
    rep = captured.parent / "report"
    # forces are scored (the default) at each fidelity of the multi-fidelity model; the others' reports score
    # the energy only, to keep this file's time down (7net-0's forces: test_open_world)
    quantity = [] if case[1] else ["--quantity", "energy"]
    small = ["--controls", "1", "--ablation-molecules", str(ABLATION), "--map-points", str(SUBSET),
             "--map-method", "pca", "--first-look", "0", *quantity, "--out", str(rep)]
    capsys.readouterr()
    assert main(["report", str(captured), *small]) == 0
    md = (rep / "report.md").read_text()
    assert "## Summary" in md and f"SevenNet {case[0]}" in md
    if case[1]:
        assert f"modality {case[1]} of R2SCAN, PBE" in md
    util = pd.read_csv(rep / "tables" / "utilisation.csv")
    assert set(util["quantity"]) == ({"energy", "forces"} if case[1] else {"energy"})
    assert util["utilisation"].notna().all()
    top = int(util["l"].max())  # the model without its highest order, by surgery, scored beside the ablations
    removed = util[util["intervention"] == "removed"]
    assert removed["edits"].tolist() == [f"surgery without l={top}"] and removed["utilisation"].notna().all()
    assert not (rep / "tables" / "recovery.csv").exists()

    # the same report rerun with --recovery: the costly stages reused, the recovery leg added
    assert main(["report", str(captured), *small, "--recovery", "--recovery-steps", "1"]) == 0
    said = capsys.readouterr()
    assert "reusing the utilisation" in said.out and "internal error" not in said.out + said.err
    rec = pd.read_csv(rep / "tables" / "recovery.csv")
    assert set(rec.loc[rec["leg"] == "recovery", "l"]) == set(range(1, top + 1))
    assert rec.loc[rec["leg"] == "recovery", "outcome"].notna().all()
    orders = pd.read_csv(rep / "tables" / "orders.csv")
    assert orders["order"].tolist() == [f"l={l}" for l in range(1, top + 1)]
    assert (orders["rests on"] == "recovery").all()
    assert "## Summary" in (rep / "report.md").read_text()


def test_surgery_is_the_masked_model_and_prune_writes_a_file_sevenns_calculator_runs(case, qm9, tmp_path):
    from irrepprobe.capture import resolve_data
    from irrepprobe.data.structures import from_atoms
    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions

    model = _load(case)
    adapter, top, fid = model.adapter, model.info["lmax"], case[1]
    structures = resolve_data("qm9:test", model, PRUNE_SUBSET)  # what prune --data qm9:test --subset reads
    n_held = round(PRUNE_SUBSET * 0.2)  # prune's held-out share: the last structures
    held = structures.take(np.arange(PRUNE_SUBSET - n_held, PRUNE_SUBSET))
    batches = list(adapter.batches(model, structures, PRUNE_SUBSET))

    # surgery: the model without its highest order computes what the masked model computes, in memory and
    # as a file that sevenn's own calculator runs (at the fidelity)
    small = _quiet(adapter.without_orders, model, [top])
    assert small.info["lmax"] == top - 1 and f"{top}e" not in small.info["irreps_hidden"]
    assert small.info["head"] == fid and small.info["heads"] == model.info["heads"]
    full, mask, cut = (predictions(m, batches).double().reshape(-1) for m in (model, masked(model, [top]), small))
    assert (mask - full).abs().max() > 1e-2  # the order matters: the check below is not vacuous
    assert torch.allclose(cut, mask, atol=1e-4, rtol=0)  # float32 rounding on energies of ~70 eV
    atoms = structures.atoms(1)
    atoms.calc = _calculator(adapter.write(small, tmp_path / "small.pth"), fid)
    assert atoms.get_potential_energy() == pytest.approx(float(mask[1]), abs=1e-3)

    out = tmp_path / "pruned"
    assert main(["prune", case[0], "--format", "sevenn", *_fidelity(case), "--trust", "--drop-l", str(top),
                 "--data", "qm9:test", "--subset", str(PRUNE_SUBSET), "--steps", "1", "--md-steps", "1",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv").set_index("model")
    assert "Command: `irrepprobe prune" in (out / "report.md").read_text()
    # before fine-tuning, the pruned model is the masked one: as far from the original on the held-out ones
    rows = slice(PRUNE_SUBSET - n_held, PRUNE_SUBSET)
    mae = float(((mask[rows] - full[rows]).abs() / held.n_atoms.double()).mean())
    assert table.loc["pruned, before fine-tuning", "energy MAE vs original"] == pytest.approx(mae, rel=1e-3, abs=1e-6)
    # the fine-tuned file as sevenn's calculator runs it, at the fidelity, is what irrepprobe reads back
    ours = _quiet(adapter.load, str(out / "pruned.pth"), trust=True)
    assert ours.info["lmax"] == top - 1 and ours.info["heads"] == model.info["heads"]
    ours = adapter.choose(ours, fid)
    atoms = held.atoms(0)
    batch = next(adapter.batches(ours, from_atoms([atoms.copy()]), 1))
    atoms.calc = _calculator(out / "pruned.pth", fid)
    assert atoms.get_potential_energy() == pytest.approx(float(adapter.predict(ours, batch)), abs=1e-3)
