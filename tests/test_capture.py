import pytest
import torch
from e3nn import o3
from e3nn.nn import Gate

from conftest import smoke_config
from irrepprobe.adapters import load_model
from irrepprobe.capture import (Recorder, blocks, capture_checkpoint, choose_points, find_points, load_capture,
                                run_capture, split)
from irrepprobe.cli import main
from irrepprobe.data.structures import qm9_structures
from irrepprobe.errors import IrrepprobeError
from irrepprobe.train import train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cap")
    train(smoke_config(**{"train.epochs": 1, "model.ls": [0, 1, 2]}), out, progress=False, log=lambda *a: None)
    return out / "best.pt"


def test_block_slicing_agrees_with_irreps_slices():
    irreps = o3.Irreps("3x0e+2x1o+1x0e+2x2e")
    x = torch.randn(5, irreps.dim)
    parts = split(x, irreps)
    assert set(parts) == {"0e", "1o", "2e"}
    s = irreps.slices()
    assert torch.equal(parts["1o"], x[:, s[1]].reshape(5, 2, 3))
    assert torch.equal(parts["2e"], x[:, s[3]].reshape(5, 2, 5))
    assert torch.equal(parts["0e"], torch.cat([x[:, s[0]], x[:, s[2]]], 1)[..., None])
    assert [b.mul for b in blocks(irreps)] == [4, 2, 2]


def test_unreadable_layouts_are_refused():
    with pytest.raises(IrrepprobeError, match="ir_mul"):
        blocks("2x1o", layout="ir_mul")
    with pytest.raises(IrrepprobeError, match="does not match irreps"):
        split(torch.zeros(4, 7), "2x1o")


def test_norm_shares_sum_to_one_and_files_exist(ckpt, tmp_path):
    cap = capture_checkpoint(ckpt, out=tmp_path / "c", device="cpu")
    assert {"arrays.npz", "meta.json", "summary.csv"} <= {p.name for p in (tmp_path / "c").iterdir()}
    shares = cap.summary.groupby("point")["norm_share"].sum()
    assert torch.allclose(torch.tensor(shares.values), torch.ones(len(shares), dtype=torch.float64))
    assert cap.points == ["embedding", "layers.0", "layers.1.update", "layers.1", "readout"]
    assert cap.meta["n_molecules"] == 30 and len(cap.meta["checkpoint_sha256"]) == 64
    assert cap.pooled("layers.1", "1o", "vector_sum").shape == (30, 8, 3)
    assert cap.pooled("layers.1", "0e", "value_mean").shape == (30, 8)
    assert abs(cap.errors).mean() == pytest.approx(abs(cap.outputs - cap.targets).mean())
    again = load_capture(tmp_path / "c")
    assert again.summary.equals(cap.summary)


def test_rotation_leaves_invariants_and_rotates_vectors(ckpt, qm9):
    model = load_model(ckpt, "irrepprobe")
    model.module.double()
    points = choose_points(model, None)
    structures = qm9_structures(qm9, torch.arange(100, 116))
    R = o3.rand_matrix().double()
    a = run_capture(model, structures, points, batch_size=8)[0].molecule_arrays()
    b = run_capture(model, structures.rotated(R), points, batch_size=8)[0].molecule_arrays()
    for key in a:
        if key[2] != "vector_sum":
            assert torch.allclose(torch.tensor(a[key]), torch.tensor(b[key]), atol=1e-4), key
    v = torch.tensor(a[("layers.1", "1o", "vector_sum")]).double()
    D = o3.Irreps("1o").D_from_matrix(R)
    assert torch.allclose(v @ D.T, torch.tensor(b[("layers.1", "1o", "vector_sum")]).double(), atol=1e-4)
    assert v.abs().max() > 1e-2


def test_hooks_are_removed_after_an_exception(ckpt, qm9):
    model = load_model(ckpt, "irrepprobe")
    batch = next(model.adapter.batches(model, qm9_structures(qm9, torch.arange(4)), 4))
    with pytest.raises(ValueError):
        with Recorder(model.module, choose_points(model, None)) as rec:
            rec.begin(batch)
            model.module(batch.inputs)
            raise ValueError("boom")
    assert all(not m._forward_hooks for m in model.module.modules())


def test_plain_e3nn_model_is_captured():
    gate = Gate("4x0e", [torch.tanh], "2x0e", [torch.sigmoid], "2x1o")
    model = torch.nn.Sequential(o3.Linear("3x0e+1x1o", gate.irreps_in), gate, o3.Linear("4x0e+2x1o", "1x0e+1x1o"))
    points = find_points(model)
    assert list(points) == ["0", "1", "2"]
    x = torch.randn(10, 6)
    batch = torch.tensor([0] * 4 + [1] * 6)
    with Recorder(model, points) as rec:
        rec.begin(batch)
        model(x)
    arrays = rec.molecule_arrays()
    assert arrays[("1", "1o", "vector_sum")].shape == (2, 2, 3)
    assert arrays[("2", "0e", "value_sum")].shape == (2, 1)
    # glob selection and user-given irreps for a module without irreps_out
    wrapped = torch.nn.Sequential(torch.nn.Identity(), model)
    pts = find_points(wrapped, ["0", "1.1"], irreps={"0": "3x0e+1x1o"})
    assert str(pts["0"]) == "3x0e+1x1o" and str(pts["1.1"]) == "4x0e+2x1o"


def test_compiled_and_scripted_models_are_refused():
    lin = torch.nn.Linear(3, 3)
    with pytest.raises(IrrepprobeError, match="TorchScript"):
        find_points(torch.jit.script(lin))
    with pytest.raises(IrrepprobeError, match="eager module"):
        find_points(torch.compile(lin))


def test_save_nodes_writes_shards(ckpt, tmp_path):
    capture_checkpoint(ckpt, out=tmp_path / "n", device="cpu", save_nodes=True, layers=["layers.*"])
    shards = sorted((tmp_path / "n" / "nodes").glob("shard-*.npz"))
    assert shards
    import numpy as np

    with np.load(shards[0]) as f:
        assert f["layers.0"].shape[1] == o3.Irreps("8x0e+8x1o+8x2e").dim
        assert f["__batch__"].shape[0] == f["layers.0"].shape[0]


def _cli(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, capsys.readouterr()


def test_capture_cli_prints_the_table(ckpt, tmp_path, capsys):
    code, out = _cli(capsys, "capture", ckpt, "--out", tmp_path / "c", "--subset", 10, "--device", "cpu")
    assert code == 0
    assert "norm_share" in out.out and "layers.1" in out.out and "1o" in out.out


@pytest.mark.parametrize("argv,message", [
    (["missing.pt"], "model file not found"),
    (["CKPT", "--layers", "nosuch.*"], "no point matches 'nosuch.*'"),
    (["CKPT", "--split", "holdout"], "unknown QM9 split 'holdout'"),
    (["CKPT", "--subset", "0"], "--subset must be a positive"),
])
def test_capture_bad_input(ckpt, tmp_path, capsys, argv, message):
    argv = [str(ckpt) if a == "CKPT" else a for a in argv]
    code, out = _cli(capsys, "capture", *argv, "--out", tmp_path / "c")
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "meta.json").exists()


@pytest.mark.parametrize("fmt,message", [("auto", "no adapter claims"),
                                         ("irrepprobe", "refusing"), ("e3nn", "--trust")])
def test_capture_refuses_a_pickle(tmp_path, capsys, fmt, message):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    code, out = _cli(capsys, "capture", tmp_path / "evil.pt", "--format", fmt)
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()


def test_empty_split_is_refused(ckpt, tmp_path, capsys):
    raw = torch.load(ckpt, weights_only=True)
    raw["split"]["test"] = raw["split"]["test"][:0]
    torch.save(raw, tmp_path / "empty.pt")
    code, out = _cli(capsys, "capture", tmp_path / "empty.pt", "--out", tmp_path / "c")
    assert code == 2 and "empty" in out.err


class _Two(torch.nn.Module):
    """Two linear maps run in the order a, b; their outputs are read as node or edge rows."""

    def __init__(self, irreps):
        super().__init__()
        self.a = o3.Linear(irreps, irreps)
        self.b = o3.Linear(irreps, irreps)

    def forward(self, x):
        return self.b(self.a(x))


def _batch(n_per, edge_batch=None):
    from irrepprobe.adapters import Batch

    atom_batch = torch.cat([torch.full((n,), k) for k, n in enumerate(n_per)])
    return Batch(None, atom_batch, torch.arange(len(n_per)), edge_batch)


def test_edge_points_are_pooled_over_edges_even_when_edges_equal_atoms():
    from irrepprobe.adapters import Point

    irreps = o3.Irreps("2x0e+1x1o")
    model = _Two(irreps)
    x = torch.randn(4, irreps.dim)
    batch = _batch([2, 2], edge_batch=torch.tensor([0, 1, 1, 1]))  # 4 atoms, 4 edges, split differently
    pts = [Point("a", "a", irreps, kind="edge"), Point("b", "b", irreps, kind="node")]
    with torch.no_grad():
        out_a = model.a(x)
    with Recorder(model, pts) as rec:
        rec.begin(batch)
        model(x)
    arrays = rec.molecule_arrays()
    v = split(out_a, irreps)["1o"]
    want = torch.stack([v[:1].sum(0), v[1:].sum(0)])
    assert torch.allclose(torch.tensor(arrays[("a", "1o", "vector_sum")]), want, atol=1e-6)
    assert not torch.allclose(torch.tensor(arrays[("a", "1o", "vector_sum")]),
                              torch.stack([v[:2].sum(0), v[2:].sum(0)]), atol=1e-3)
    assert not rec.skipped


def test_an_edge_point_without_an_edge_index_is_skipped_not_pooled_as_atoms():
    from irrepprobe.adapters import Point

    irreps = o3.Irreps("2x0e")
    model = _Two(irreps)
    with Recorder(model, [Point("a", "a", irreps, kind="edge"), Point("b", "b", irreps)]) as rec:
        rec.begin(_batch([2, 2]))
        model(torch.randn(4, 2))
    assert "a" in rec.skipped and "edge" in rec.skipped["a"]
    assert ("b", "0e", "value_sum") in rec.molecule_arrays()


@pytest.mark.parametrize("layout", ["ir_mul", "mul_first"])
def test_other_layouts_are_converted_not_sliced_as_mul_ir(layout):
    from irrepprobe.adapters import Point
    from irrepprobe.capture import from_mul_ir, to_mul_ir

    irreps = o3.Irreps("3x0e+3x1o+3x2e")
    x = torch.randn(5, irreps.dim)
    stored = from_mul_ir(x, irreps, layout)
    assert torch.equal(to_mul_ir(stored, irreps, layout), x)

    class Out(torch.nn.Module):
        def forward(self, t):
            return stored

    model = torch.nn.Sequential(Out())
    batch = _batch([2, 3])
    with Recorder(model, [Point("0", "0", irreps, layout=layout)]) as rec:
        rec.begin(batch)
        model(x)
    got = torch.tensor(rec.molecule_arrays()[("0", "1o", "vector_sum")]).double()
    want = split(x, irreps)["1o"].double()
    assert torch.allclose(got, torch.stack([want[:2].sum(0), want[2:].sum(0)]), atol=1e-5)
    if layout == "ir_mul":  # the same numbers sliced as mul_ir would mix channels and components
        wrong = split(stored, irreps)["1o"].double()
        assert not torch.allclose(got, torch.stack([wrong[:2].sum(0), wrong[2:].sum(0)]), atol=1e-3)


def test_a_width_that_does_not_fit_the_irreps_is_refused():
    from irrepprobe.adapters import Point

    model = _Two(o3.Irreps("4x0e"))
    with pytest.raises(IrrepprobeError, match="does not match irreps"):
        with Recorder(model, [Point("a", "a", "1x1o")]) as rec:
            rec.begin(_batch([2, 2]))
            model(torch.randn(4, 4))


def test_node_shards_stay_in_step_when_points_are_listed_out_of_run_order(tmp_path):
    from irrepprobe.adapters import Point

    irreps = o3.Irreps("2x0e+1x1o")
    model = _Two(irreps)
    pts = [Point("b", "b", irreps), Point("a", "a", irreps)]  # b is listed first but runs last
    with Recorder(model, pts, nodes_dir=tmp_path, shard_atoms=5) as rec:
        for n_per in ([2, 2], [3], [1, 2, 2], [4]):
            rec.begin(_batch(n_per))
            model(torch.randn(sum(n_per), irreps.dim))
    import numpy as np

    shards = sorted(tmp_path.glob("shard-*.npz"))
    assert len(shards) >= 2
    total = 0
    for path in shards:
        with np.load(path) as f:
            assert f["a"].shape[0] == f["b"].shape[0] == f["__batch__"].shape[0]
            total += f["__batch__"].shape[0]
    assert total == 4 + 3 + 5 + 4
