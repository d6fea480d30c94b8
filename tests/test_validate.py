"""irrepprobe validate: the Delta test's mathematics, each check able to fail, and bad input refused."""
import numpy as np
import pandas as pd
import pytest

from irrepprobe.cli import main
from irrepprobe.validate import eos, stress


def test_birch_murnaghan_fit_recovers_its_parameters_and_delta_is_a_distance():
    v0, b0, b1 = 20.0, 0.6, 4.5
    vols = v0 * eos.STRAINS
    r = eos.fit(vols, eos.birch_murnaghan(vols, v0, b0, b1, -3.0))
    assert r["ok"] and r["v0"] == pytest.approx(v0) and r["b0"] == pytest.approx(b0) and r["b1"] == pytest.approx(b1)
    assert eos.delta((v0, b0, b1), (v0, b0, b1), v0) == pytest.approx(0.0)
    a, b = (v0 * 1.01, b0, b1), (v0, b0 * 1.1, b1)
    assert eos.delta(a, b, v0) == pytest.approx(eos.delta(b, a, v0)) and eos.delta(a, b, v0) > 0
    # a pure energy shift is not a difference of equations of state: both are aligned at their minima
    assert eos.fit(vols, eos.birch_murnaghan(vols, v0, b0, b1, 5.0))["b0"] == pytest.approx(b0)
    # a curve that only falls has no minimum: refused, not fitted
    assert not eos.fit(vols, -vols ** 2)["ok"]


class _ScaledStress:
    """EMT whose stress is off by ``factor``: the stress check must catch it."""

    def __init__(self, factor):
        from ase.calculators.emt import EMT

        self.emt, self.factor = EMT(), factor
        self.implemented_properties = ["energy", "forces", "stress"]

    def get_potential_energy(self, atoms=None, **kw):
        return self.emt.get_potential_energy(atoms)

    def get_stress(self, atoms=None, **kw):
        return self.emt.get_stress(atoms) * self.factor

    def get_property(self, name, atoms=None, allow_calculation=True):
        return {"energy": self.get_potential_energy, "free_energy": self.get_potential_energy,
                "stress": self.get_stress, "forces": self.emt.get_forces}[name](atoms)

    def calculation_required(self, atoms, props):
        return True


@pytest.mark.parametrize("factor,verdict", [(1.0, "consistent"), (1.5, "inconsistent")])
def test_stress_check_tells_a_right_stress_from_a_wrong_one(factor, verdict):
    cells = {k: v for k, v in stress.cells(None).items() if k.startswith("Cu")}
    table = stress.run(_ScaledStress(factor), "emt", cells)
    assert stress.summary(table)["verdict"].iloc[0] == verdict


def test_a_calculator_without_stress_is_marked_not_computed():
    from ase.calculators.emt import EMT

    class NoStress(EMT):
        implemented_properties = ["energy", "forces"]

    table = stress.run(NoStress(), "nostress", stress.cells(None))
    assert stress.summary(table)["verdict"].iloc[0] == "not computed"
    assert table["note"].str.startswith("not computed").all()


def test_sevennet_0_reproduces_the_anchor_and_the_report_reads(tmp_path, capsys):
    pytest.importorskip("sevenn")
    out = tmp_path / "v"
    code = main(["validate", "7net-0", "again=7net-0", "--format", "sevenn", "--trust", "--suite", "eos,stress,molecules",
                 "--elements", "Si,Al,Fe", "--qm9", "12", "--out", str(out)])
    assert code == 0
    fits = pd.read_csv(out / "tables" / "eos.csv").fillna({"flag": ""})
    si = fits[(fits["model"] == "7net-0") & (fits["element"] == "Si")].iloc[0]
    # the quick fit quoted in reference.md: Si 1.3, Al 0.4, Fe 6.5 meV/atom (Fe: magnetic reference, flagged)
    assert si["Delta vs WIEN2k (meV/atom)"] == pytest.approx(1.32, abs=0.1)
    fe = fits[(fits["model"] == "7net-0") & (fits["element"] == "Fe")].iloc[0]
    assert "magnetic" in fe["flag"] and fe["Delta vs WIEN2k (meV/atom)"] == pytest.approx(6.4, abs=0.3)
    assert fits["calculator - batched (meV/atom)"].abs().max() < 0.1  # the batched energies are the calculator's
    between = pd.read_csv(out / "tables" / "delta_between.csv")
    assert between["mean Delta A-B (meV/atom)"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    md = (out / "report.md").read_text()
    assert "Delta to WIEN2k" in md and "too few crystals" in md and "consistent" in md
    assert "another reference than QM9" in md  # PBE total energies against QM9's B3LYP: shown, not hidden
    # rerun: every check reused from the cache
    code = main(["validate", "7net-0", "again=7net-0", "--format", "sevenn", "--trust", "--suite", "eos,stress,molecules",
                 "--elements", "Si,Al,Fe", "--qm9", "12", "--out", str(out)])
    assert code == 0 and "reusing" in capsys.readouterr().out


def test_an_element_no_model_knows_is_listed_and_skipped(tmp_path):
    from irrepprobe.examples import example_checkpoint

    out = tmp_path / "v"
    code = main(["validate", str(example_checkpoint()), "--suite", "eos,stress,phonons", "--elements", "Si,Cu",
                 "--out", str(out)])
    assert code == 0
    skipped = (out / "tables" / "skipped.txt").read_text()
    assert "does not know Si Cu" in skipped and "stress:" in skipped and "phonons:" in skipped
    assert "Skipped (listed, not failed)" in (out / "report.md").read_text()


def _err(capsys, *argv):
    try:
        code = main(list(map(str, argv)))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("argv,message", [
    (["--elements", "Si,Qq"], "--elements takes chemical symbols"),
    (["--suite", "eos,dance"], "--suite takes checks from"),
    (["--nve-systems", "Unobtainium"], "--nve-systems takes cells from"),
    (["--speed-sizes", "64,abc"], "--speed-sizes takes numbers"),
    (["--nve-ps", "0"], "--nve-ps must be"),
])
def test_bad_options_are_one_line_and_leave_nothing(tmp_path, capsys, argv, message):
    from irrepprobe.examples import example_checkpoint

    code, err = _err(capsys, "validate", example_checkpoint(), *argv, "--out", tmp_path / "v")
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "v").exists()


def test_a_missing_model_file_is_named(tmp_path, capsys):
    code, err = _err(capsys, "validate", tmp_path / "nope.pth", "--out", tmp_path / "v")
    assert code == 2 and len(err) == 1 and "nope.pth" in err[0]
    assert not (tmp_path / "v").exists()
