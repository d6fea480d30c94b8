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
    res = prune(tmp_path / "run" / "best.pt", tmp_path / "prune", drop=[2], warm=True, log=logs.append)
    assert res["config"].model.ls == [0, 1]
    model = model_from_checkpoint(tmp_path / "prune" / "pruned-seed0" / "best.pt")
    assert all(ir.l < 2 for _, ir in model.irreps_sh)
    assert all(ir.l < 2 for layer in model.layers for _, ir in layer.irreps_out)
    assert list(res["runs"]["variant"]) == ["full", "pruned", "pruned-warm"]
    assert (tmp_path / "prune" / "pruned-warm-seed0" / "best.pt").exists()
    md = prune_report(res, tmp_path / "prune", "smoke", 0.05)
    assert "error_vs_structure.png" in md.read_text()
    logs.clear()
    prune(tmp_path / "run" / "best.pt", tmp_path / "prune", drop=[2], warm=True, log=logs.append)
    assert sum("done, skipped" in line for line in logs) == 2
    logs.clear()  # --auto resting on recovery: the orders dispensable after fine-tuning with them masked
    res = prune(tmp_path / "run" / "best.pt", tmp_path / "prune", recovery_steps=3, log=logs.append)
    assert any("dispensable after 3 fine-tuning steps" in line for line in logs)
    assert (tmp_path / "prune" / "baseline" / "recovery" / "l2.npz").exists()
    assert main(["prune", str(tmp_path / "run" / "best.pt")]) == 2
    assert main(["prune", str(tmp_path / "run" / "best.pt"), "--drop-l", "x"]) == 2


def _switch_off(model, l):
    """Zero every weight that reads or writes order l (per-edge weights of paths through l too)."""
    import torch

    from irrepprobe.models.layers import Interaction

    def linear(lin):
        offset = 0
        for ins in lin.instructions:
            n = ins.path_shape[0] * ins.path_shape[1]
            if l in (lin.irreps_in[ins.i_in].ir.l, lin.irreps_out[ins.i_out].ir.l):
                lin.weight[offset:offset + n] = 0
            offset += n

    with torch.no_grad():
        for layer in model.layers:
            assert isinstance(layer, Interaction)
            last = list(layer.radial.children())[-1]
            offset = 0
            for ins in layer.tp.instructions:
                n = ins.path_shape[0]
                tp = layer.tp
                if l in (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l):
                    last.weight[:, offset:offset + n] = 0
                offset += n
            linear(layer.linear)
            linear(layer.self_connection)
        linear(model.readout.linear1)


@pytest.mark.parametrize("target, ls, drop", [("u0_atom", [0, 1, 2], [2]), ("dipole_vec", [0, 1, 2, 3], [2]),
                                              ("u0_atom", [0, 1, 2, 3], [1, 3])])
def test_warm_start_computes_what_the_full_model_computes_without_the_dropped_orders(qm9, target, ls, drop):
    import torch

    from irrepprobe.data import loader, target_values
    from irrepprobe.models import build_model
    from irrepprobe.adapters.irrepprobe.surgery import warm_start

    cfg = smoke_config(**{"model.ls": ls, "data.target": target, "model.avg_neighbors": 6.0, "model.layers": 3})
    torch.manual_seed(0)
    full = build_model(cfg).double()
    small_cfg = pruned_config(cfg, drop)
    small = build_model(small_cfg).double()
    batch = next(iter(loader(qm9, target_values(qm9, target), torch.arange(12), 12)))
    batch.pos = batch.pos.double()
    cold = small(batch)
    for l in drop:
        _switch_off(full, l)
    warm_start(small, full)
    want = full(batch)
    assert want.abs().max() > 1e-3
    assert torch.allclose(small(batch), want, atol=1e-9 * want.abs().max().item(), rtol=1e-7)
    assert not torch.allclose(cold, want, atol=1e-3)


@pytest.mark.parametrize("ls, drop", [([0, 1], [1]), ([0, 1, 2], [1, 2])])
def test_removing_every_order_above_zero_keeps_the_full_models_wiring(qm9, ls, drop):
    import torch

    from irrepprobe.data import loader, target_values
    from irrepprobe.models import build_model
    from irrepprobe.adapters.irrepprobe.surgery import without_orders

    cfg = smoke_config(**{"model.ls": ls, "model.avg_neighbors": 6.0, "model.layers": 3})
    torch.manual_seed(0)
    full = build_model(cfg).double()
    batch = next(iter(loader(qm9, target_values(qm9, "u0_atom"), torch.arange(12), 12)))
    batch.pos = batch.pos.double()
    small = without_orders(full, drop)  # scalars alone: the first layer maps 0e onto 0e, yet has no residual
    assert [a.residual for a in small.layers] == [b.residual for b in full.layers] == [False, True, True]
    for l in drop:
        _switch_off(full, l)
    want = full(batch)
    assert torch.allclose(small(batch), want, atol=1e-9 * want.abs().max().item(), rtol=1e-7)
