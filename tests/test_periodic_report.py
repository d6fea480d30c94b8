"""Periodic systems end to end: SevenNet-0 captured and reported on rattled bulk crystals built with
ASE, forces scored beside the energy, and the denominators that such data breaks flagged instead of
printed as findings."""
import numpy as np
import pytest

pytest.importorskip("sevenn")

from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.io import write  # noqa: E402

from irrepprobe.adapters import load_model  # noqa: E402
from irrepprobe.capture import capture  # noqa: E402
from irrepprobe.data.structures import read_structures  # noqa: E402
from irrepprobe.metrics import denominator_checks, utilisation  # noqa: E402
from irrepprobe.study import make_report  # noqa: E402


def cells(kinds, n, seed=0, label=False):
    """``n`` rattled supercells cycling over ``kinds`` (e.g. ["Si", "Cu"]); EMT energies and forces as
    labels with ``label`` (EMT knows Cu, not Si)."""
    made = {"Si": lambda: bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1),
            "Cu": lambda: bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)}
    out = []
    for i in range(n):
        at = made[kinds[i % len(kinds)]]()
        at.rattle(stdev=0.05 + 0.02 * (i % 3), seed=seed + i)
        at.set_cell(at.cell * (1 + 0.01 * (i % 4 - 1.5)), scale_atoms=True)
        if label:
            at.calc = EMT()
            at.get_potential_energy()
            at.get_forces()
        out.append(at)
    return out


@pytest.fixture(scope="module")
def seven():
    return load_model("7net-0", "sevenn", trust=True)


def _capture(seven, frames, path):
    write(path / "cells.extxyz", frames)
    structures = read_structures(path / "cells.extxyz")
    target = "energy" if "energy" in structures.labels else None
    # named on purpose: EMT energies are on another reference than SevenNet's PBE ones (a per-element
    # offset), which capture, left to itself, sets aside; these tests measure what such a label does
    return capture(seven, structures, out=path / "cap", target=target, check_equivariance=4, trusted=True,
                   target_named=True)


def test_sevenn_report_on_rattled_si_and_cu_scores_forces_and_says_the_data_is_periodic(seven, tmp_path):
    cap = _capture(seven, cells(["Si", "Cu"], 12), tmp_path)
    assert cap.meta["periodic"] == 12 and cap.meta["equivariance"]["passed"]
    res = make_report(cap, out=tmp_path / "report", device="cpu", controls=2, map_method="pca",
                      log=lambda *a: None)
    util = res["tables"]["utilisation"]
    assert set(util["quantity"]) == {"energy", "forces"} and set(util["score"]) == {"shift"}
    hidden = util[util["point"] != "all"]
    # two stoichiometries: both denominators exist, every number is finite
    assert np.isfinite(hidden["scale_free"]).all() and np.isfinite(hidden["scale_free_high"]).all()
    assert (hidden.loc[hidden["intervention"] == "zero"].groupby("quantity")["scale_free"].max() > 0.05).all()
    md = res["report_md"].read_text()
    assert "12 of them periodic" in md and "equivariance check passed" in md
    assert "forces (shift of the model's own forces" in md and "What it rests on" in md
    # 12 cells against hundreds of features per block: every probe control is flagged, nothing "carried"
    assert (res["tables"]["probes"]["control_flag"] != "").all()
    assert len(res["verdict"]["best_other"]) == 0


def test_one_element_leaves_the_energy_share_out_and_rests_on_forces(seven, tmp_path):
    cap = _capture(seven, cells(["Si"], 6), tmp_path)
    table = utilisation(cap, device="cpu", batch_size=3, n_boot=100)
    checks = denominator_checks(cap, table)
    assert {"one stoichiometry", "prediction spread degenerate"} <= set(checks["check"])
    energy, forces = table[table["quantity"] == "energy"], table[table["quantity"] == "forces"]
    assert energy["scale_free"].isna().all() and energy["utilisation"].isna().all()
    assert (energy["mae"] > 0).any()  # the raw shifts (eV per atom) stay
    assert np.isfinite(forces["scale_free"]).all() and forces["scale_free"].max() > 0.05


def test_labels_score_errors_and_an_energy_scale_no_better_than_a_constant_is_flagged(seven, tmp_path):
    """EMT labels on Cu: SevenNet's (PBE) energies sit far from EMT's, which a constant per atom fits
    better; its forces are still much closer to EMT's than zero forces are."""
    cap = _capture(seven, cells(["Cu"], 6, label=True), tmp_path)
    table = utilisation(cap, device="cpu", batch_size=3, n_boot=100)
    assert set(table["score"]) == {"error"}
    checks = denominator_checks(cap, table).set_index("check")
    assert checks.loc["no better than the baseline", "quantity"] == "energy"
    forces = table[table["quantity"] == "forces"]
    assert np.isfinite(forces["scale_free"]).all() and (forces["scale"] > 0).all()
