import os
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import smoke_config
from irrepprobe.cli import main
from irrepprobe.errors import IrrepprobeError
from irrepprobe.train import evaluate, load_checkpoint, model_from_checkpoint, train


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    result = train(smoke_config(**{"train.epochs": 4, "train.keep_epochs": [0, 2, 4]}), out, progress=False,
                   log=lambda *a: None)
    return out, result


def test_smoke_training_lowers_the_loss(smoke_run):
    out, result = smoke_run
    history = load_checkpoint(out / "last.pt")["history"]
    assert len(history) == 4
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert history[-1]["val_mae"] < history[0]["val_mae"]
    assert {"train_mae", "val_mae", "test_mae"} <= set(result)
    for name in ("best.pt", "last.pt", "metrics.csv", "config.yaml", "result.json"):
        assert (out / name).exists()
    assert any((out / "tb").iterdir())


def test_checkpoint_is_weights_only_and_complete(smoke_run):
    out, _ = smoke_run
    raw = torch.load(out / "best.pt", weights_only=True)
    assert raw["config"]["data"]["target"] == "u0_atom"
    assert set(raw["split"]) == {"train", "val", "test"}
    assert raw["versions"]["torch"] and raw["metrics"]["test_mae"] > 0
    assert raw["config"]["model"]["avg_neighbors"] > 0  # the resolved config, not the preset


def test_evaluate_uses_the_saved_split(smoke_run):
    out, result = smoke_run
    df = evaluate(out / "best.pt", split="test", device="cpu")
    assert df.loc[0, "n"] == 30
    assert df.loc[0, "mae"] == pytest.approx(result["test_mae"], rel=1e-5)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    quiet = dict(progress=False, log=lambda *a: None)
    train(smoke_config(**{"train.epochs": 3}), tmp_path / "full", **quiet)
    train(smoke_config(**{"train.epochs": 1}), tmp_path / "cut", **quiet)
    train(smoke_config(**{"train.epochs": 3}), tmp_path / "cut", resume=True, **quiet)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert b["epoch"] == 2 and len(b["history"]) == 3
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
    assert a["history"][-1]["val_mae"] == pytest.approx(b["history"][-1]["val_mae"], rel=1e-5)


def test_existing_run_is_not_overwritten(smoke_run):
    out, _ = smoke_run
    before = (out / "best.pt").read_bytes()
    with pytest.raises(IrrepprobeError, match="already holds a training run"):
        train(smoke_config(), out, progress=False)
    assert (out / "best.pt").read_bytes() == before


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch irrepprobe_pwned",))


def _cli(capsys, *argv):
    code = main(list(map(str, argv)))
    err = capsys.readouterr().err.strip()
    return code, err


def test_malicious_pickle_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "irrepprobe.checkpoint", "model": _Evil()}, f)
    torch.save({"format": "irrepprobe.checkpoint", "x": _Evil()}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        code, err = _cli(capsys, "evaluate", p)
        assert code == 2 and len(err.splitlines()) == 1
        assert "refusing" in err
    assert not (tmp_path / "irrepprobe_pwned").exists()


@pytest.mark.parametrize("content,message", [
    (None, "checkpoint not found"),
    (b"this is not a checkpoint", "it is a text file"),
    ({"weights": torch.zeros(3)}, "not an irrepprobe checkpoint"),
])
def test_bad_checkpoints(tmp_path, capsys, content, message):
    path = tmp_path / "ckpt.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    code, err = _cli(capsys, "evaluate", path)
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_truncated_checkpoint(tmp_path, capsys, smoke_run):
    out, _ = smoke_run
    data = (out / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    code, err = _cli(capsys, "evaluate", tmp_path / "cut.pt")
    assert code == 2 and "truncated or damaged torch archive" in err


@pytest.mark.parametrize("argv,message", [
    (["--preset", "nope"], "unknown preset 'nope'; valid presets: smoke"),
    (["--preset", "smoke", "--set", "model.colour=red"], "unknown config key 'model.colour'"),
    (["--preset", "smoke", "--set", "model.ls=[1,2]"], "model.ls"),
    (["--preset", "smoke", "--set", "model.mul=-3"], "model.mul"),
    (["--preset", "smoke", "--set", "data.target=energy"], "unknown target 'energy'; valid targets"),
    (["--preset", "smoke", "--set", "data.subset=0"], "data.subset"),
    (["--preset", "smoke", "--set", "data.subset=10", "--set", "data.split=[0.98,0.02,0]"], "empty"),
    (["--preset", "smoke", "--set", "nonsense"], "bad --set"),
    (["missing.yaml"], "config file not found"),
])
def test_bad_train_input(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    code, err = _cli(capsys, "train", *argv, "--out", out, "--no-progress")
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_model_from_checkpoint_predicts(smoke_run, qm9):
    from irrepprobe.data import loader, target_values

    out, _ = smoke_run
    ckpt = load_checkpoint(out / "best.pt")
    model = model_from_checkpoint(ckpt)
    batch = next(iter(loader(qm9, target_values(qm9, "u0_atom"), ckpt["split"]["test"][:4], 4)))
    assert model(batch).shape == (4, 1)


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "irrepprobe.cli", "train", "--preset", "smoke", "--set", "train.epochs=2",
           "--device", "cpu", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "processes=2" in proc.stdout
    ckpt = load_checkpoint(out / "best.pt")
    assert len(ckpt["history"]) == 2 and ckpt["metrics"]["test_mae"] > 0


def test_kept_checkpoints_feed_dynamics_and_epoch_zero_is_the_untrained_control(smoke_run, tmp_path, capsys):
    import numpy as np

    from irrepprobe.study.dynamics import dynamics

    out, _ = smoke_run
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch0000.pt", "epoch0002.pt", "epoch0004.pt"]
    assert load_checkpoint(out / "epochs" / "epoch0004.pt")["model"].keys() == load_checkpoint(out / "last.pt")["model"].keys()
    res = dynamics(out, out=tmp_path / "dyn", subset=40, molecules=40, log=lambda *a: None)
    table = res["table"]
    assert sorted(table["epoch"].unique()) == [0, 2, 4]
    # epoch 0 is the very initialisation the untrained control re-draws: selectivity exactly 0
    assert np.allclose(table.loc[table["epoch"] == 0, "selectivity"], 0, atol=1e-9)
    assert not np.allclose(table.loc[table["epoch"] == 4, "selectivity"], 0, atol=1e-3)
    assert (tmp_path / "dyn" / "figures" / "dynamics.png").stat().st_size > 10_000
    # a second call reuses every epoch's numbers
    stamp = (tmp_path / "dyn" / "epoch0002" / "blocks.csv").stat().st_mtime_ns
    dynamics(out, out=tmp_path / "dyn", subset=40, molecules=40, log=lambda *a: None)
    assert (tmp_path / "dyn" / "epoch0002" / "blocks.csv").stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["dynamics", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keep_epochs" in err[0]


def test_keep_epochs_must_be_epoch_numbers():
    with pytest.raises(IrrepprobeError, match="train.keep_epochs"):
        smoke_config(**{"train.epochs": 4, "train.keep_epochs": [5]})
