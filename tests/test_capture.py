import pytest
import torch
from e3nn import o3
from e3nn.nn import Gate

from conftest import smoke_config
from irrepprobe.capture import Recorder, blocks, capture_checkpoint, find_points, load_capture, run_capture, split
from irrepprobe.cli import main
from irrepprobe.data import loader, target_values
from irrepprobe.errors import IrrepprobeError
from irrepprobe.train import model_from_checkpoint, train


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
    assert cap.points == ["embedding", "layers.0", "layers.1", "readout"]
    assert cap.meta["n_molecules"] == 30 and len(cap.meta["checkpoint_sha256"]) == 64
    assert cap.pooled("layers.1", "1o", "vector_sum").shape == (30, 8, 3)
    assert cap.pooled("layers.1", "0e", "value_mean").shape == (30, 8)
    assert abs(cap.errors).mean() == pytest.approx(abs(cap.outputs - cap.targets).mean())
    again = load_capture(tmp_path / "c")
    assert again.summary.equals(cap.summary)


def test_rotation_leaves_invariants_and_rotates_vectors(ckpt, qm9):
    model = model_from_checkpoint(ckpt).double()
    points = find_points(model)
    idx = torch.arange(100, 116)
    y = target_values(qm9, "u0_atom")
    R = o3.rand_matrix().double()

    def batches(rotate):
        for b in loader(qm9, y, idx, 8):
            b.pos = b.pos.double() @ (R.T if rotate else torch.eye(3, dtype=torch.float64))
            yield b

    a = run_capture(model, batches(False), points)[0].molecule_arrays()
    b = run_capture(model, batches(True), points)[0].molecule_arrays()
    for key in a:
        if key[2] != "vector_sum":
            assert torch.allclose(torch.tensor(a[key]), torch.tensor(b[key]), atol=1e-4), key
    v = torch.tensor(a[("layers.1", "1o", "vector_sum")]).double()
    D = o3.Irreps("1o").D_from_matrix(R)
    assert torch.allclose(v @ D.T, torch.tensor(b[("layers.1", "1o", "vector_sum")]).double(), atol=1e-4)
    assert v.abs().max() > 1e-2


def test_hooks_are_removed_after_an_exception(ckpt, qm9):
    model = model_from_checkpoint(ckpt)
    batch = next(iter(loader(qm9, target_values(qm9, "u0_atom"), torch.arange(4), 4)))
    with pytest.raises(ValueError):
        with Recorder(model, find_points(model)) as rec:
            rec.begin(batch.batch)
            model(batch)
            raise ValueError("boom")
    assert all(not m._forward_hooks for m in model.modules())


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
    (["missing.pt"], "checkpoint not found"),
    (["CKPT", "--layers", "nosuch.*"], "no irreps-carrying module matches 'nosuch.*'"),
    (["CKPT", "--split", "holdout"], "unknown split 'holdout'"),
    (["CKPT", "--subset", "0"], "--subset must be a positive"),
])
def test_capture_bad_input(ckpt, tmp_path, capsys, argv, message):
    argv = [str(ckpt) if a == "CKPT" else a for a in argv]
    code, out = _cli(capsys, "capture", *argv, "--out", tmp_path / "c")
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "meta.json").exists()


def test_capture_refuses_a_pickle(tmp_path, capsys):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    code, out = _cli(capsys, "capture", tmp_path / "evil.pt")
    assert code == 2 and "refusing" in out.err
    assert not (tmp_path / "pwned").exists()


def test_empty_split_is_refused(ckpt, tmp_path, capsys):
    raw = torch.load(ckpt, weights_only=True)
    raw["split"]["test"] = raw["split"]["test"][:0]
    torch.save(raw, tmp_path / "empty.pt")
    code, out = _cli(capsys, "capture", tmp_path / "empty.pt", "--out", tmp_path / "c")
    assert code == 2 and "empty" in out.err
