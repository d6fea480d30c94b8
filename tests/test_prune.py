import pandas as pd
import pytest

from conftest import smoke_config
from irrepprobe.cli import main
from irrepprobe.errors import IrrepprobeError
from irrepprobe.prune import orders_to_drop, prune, pruned_config
from irrepprobe.report.compare import prune_report
from irrepprobe.train import model_from_checkpoint, train


def test_policy_drops_an_order_only_when_unused_everywhere_and_jointly():
    rows = [("layers.0", "0e", 0, 3.0), ("layers.0", "1o", 1, 0.01), ("layers.1", "1o", 1, 0.02),
            ("layers.0", "2e", 2, 0.0), ("layers.1", "2e", 2, 0.01), ("all", "l=1", 1, 0.4), ("all", "l=2", 2, 0.01)]
    util = pd.DataFrame(rows, columns=["point", "block", "l", "utilisation"])
    assert orders_to_drop(util, 0.05) == [2]  # l=1: each block alone looks unused, together they are not
    assert orders_to_drop(util, 0.005) == []


def test_refused_prunes_say_why():
    cfg = smoke_config(**{"model.ls": [0, 1, 2], "data.target": "dipole_vec"})
    with pytest.raises(IrrepprobeError, match="dipole_vec .* needs it"):
        pruned_config(cfg, [1])
    with pytest.raises(IrrepprobeError, match="l=0 is never dropped"):
        pruned_config(cfg, [0])
    with pytest.raises(IrrepprobeError, match="cannot drop l=3"):
        pruned_config(cfg, [3])
    assert pruned_config(cfg, [2]).model.ls == [0, 1]


def test_prune_retrains_without_the_order_and_a_rerun_does_no_work(tmp_path):
    cfg = smoke_config(**{"model.ls": [0, 1, 2], "train.epochs": 1})
    train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    logs = []
    res = prune(tmp_path / "run" / "best.pt", tmp_path / "prune", drop=[2], log=logs.append)
    assert res["config"].model.ls == [0, 1]
    model = model_from_checkpoint(tmp_path / "prune" / "pruned-seed0" / "best.pt")
    assert all(ir.l < 2 for _, ir in model.irreps_sh)
    assert all(ir.l < 2 for layer in model.layers for _, ir in layer.irreps_out)
    assert list(res["runs"]["variant"]) == ["full", "pruned"]
    md = prune_report(res, tmp_path / "prune", "smoke", 0.05)
    assert "error_vs_structure.png" in md.read_text()
    logs.clear()
    prune(tmp_path / "run" / "best.pt", tmp_path / "prune", drop=[2], log=logs.append)
    assert any("done, skipped" in line for line in logs)
    assert main(["prune", str(tmp_path / "run" / "best.pt")]) == 2
    assert main(["prune", str(tmp_path / "run" / "best.pt"), "--drop-l", "x"]) == 2
