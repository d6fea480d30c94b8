"""The open world end to end through the CLI: a third-party model over structures from an extxyz file,
captured and reported, as a new user would run it."""
import pandas as pd
import pytest
import torch
from e3nn import o3

from irrepprobe.capture import find_points, load_capture
from irrepprobe.cli import main


@pytest.fixture(scope="module")
def xyz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "qm9-20.xyz"
    assert main(["data", "export", str(path), "--subset", "20"]) == 0
    return path


def _capture_and_report(tmp_path, *argv):
    assert main(["capture", *map(str, argv), "--out", str(tmp_path / "cap"), "--device", "cpu"]) == 0
    cap = load_capture(tmp_path / "cap")
    assert main(["report", str(tmp_path / "cap"), "--out", str(tmp_path / "rep"), "--map-method", "pca",
                 "--device", "cpu", "--ablation-molecules", "12"]) == 0
    return cap, tmp_path / "rep"


def test_sevenn_capture_and_report_without_labels_of_its_energy(xyz, tmp_path):
    pytest.importorskip("sevenn")
    cap, rep = _capture_and_report(tmp_path, "7net-0", "--format", "sevenn", "--data", xyz, "--trust",
                                   "--batch-size", 10)
    assert cap.meta["adapter"] == "sevenn" and cap.meta["target"] is None and "error" not in cap.arrays
    assert cap.points[0] == "onehot_to_feature_x" and "4_equivariant_gate" in cap.points
    util = pd.read_csv(rep / "tables" / "utilisation.csv")
    assert (util["score"] == "shift").all() and util["utilisation"].notna().all()
    assert set(util["quantity"]) == {"energy", "forces"}  # forces by autograd, scored beside the energy
    zero = util[util["intervention"] == "zero"].set_index(["point", "block", "quantity"])
    assert zero.loc[("0_equivariant_gate", "0e", "energy"), "utilisation"] > 0.05
    assert zero.loc[("0_equivariant_gate", "0e", "forces"), "utilisation"] > 0.05
    eq = pd.read_csv(rep / "tables" / "probes_equivariant.csv")
    assert set(eq[eq["target"] == "dipole_vec"]["block"]) == {"1e"}  # vectors without parity are probed
    md = (rep / "report.md").read_text()
    assert "SevenNet 7net-0" in md and "no label of its energy" in md
    assert (rep / "control" / "capture" / "meta.json").exists()


def test_e3nn_example_network_capture_and_report(xyz, tmp_path):
    cap, rep = _capture_and_report(tmp_path, "irrepprobe.examples.e3nn_nets:simple_network", "--data", xyz)
    assert cap.meta["adapter"] == "e3nn" and cap.points == ["mp.layers.0", "mp.layers.1", "mp.layers.2"]
    assert (rep / "report.html").exists() and "e3nn SimpleNetwork" in (rep / "report.md").read_text()


def test_our_model_on_an_exported_file_scores_errors_against_its_label(xyz, tmp_path):
    cap, rep = _capture_and_report(tmp_path, "--data", xyz)
    assert cap.meta["target"] == "u0_atom" and "error" in cap.arrays
    assert (pd.read_csv(rep / "tables" / "utilisation.csv")["score"] == "error").all()


def test_dict_irreps_are_not_taken_for_irreps():
    class NequipLike(torch.nn.Module):  # NequIP modules carry {field: irreps}
        def __init__(self):
            super().__init__()
            self.inner = o3.Linear("2x0e", "2x0e")
            self.irreps_out = {"node_features": o3.Irreps("2x0e")}

    model = torch.nn.Sequential(NequipLike())
    assert list(find_points(model)) == ["0.inner"]
