"""analyses/lee/carry.py: an unfinished run saved in one session resumes in the next; nothing is lost."""
import importlib.util
from pathlib import Path

from irrepprobe.experiments.run import state

_spec = importlib.util.spec_from_file_location("carry", Path(__file__).parents[1] / "analyses" / "lee" / "carry.py")
carry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carry)


def _run(d: Path, epoch: int) -> None:
    (d / "epochs").mkdir(parents=True, exist_ok=True)
    for name in ("last.pt", "best.pt", "epochs/0.pt"):
        (d / name).write_text(f"epoch {epoch}")
    (d / "metrics.csv").write_text("epoch\n" + "".join(f"{e}\n" for e in range(1, epoch + 1)))
    (d / "tb").mkdir(exist_ok=True)


def test_saved_run_restores_on_a_new_machine(tmp_path):
    runs, saved = tmp_path / "experiments", tmp_path / "state"
    _run(runs / "a" / "seed0", 7)
    carry.save(runs, saved, ["a/seed0", "a/seed1"])
    assert (saved / "a/seed0/last.pt").read_text() == "epoch 7"
    assert (saved / "a/seed0/epochs/0.pt").exists() and not (saved / "a/seed0/tb").exists()
    assert not (saved / "a/seed1").exists()  # nothing to save: never started
    fresh = tmp_path / "fresh"
    carry.restore(fresh, saved, "a/seed0")
    assert state(fresh / "a/seed0") == "partial" and (fresh / "a/seed0/metrics.csv").read_text().count("\n") == 8


def test_restore_never_overwrites_a_run_here_and_finished_runs_drop_their_state(tmp_path):
    runs, saved = tmp_path / "experiments", tmp_path / "state"
    _run(runs / "a", 7)
    carry.save(runs, saved, ["a"])
    _run(runs / "a", 9)  # this machine went further than the saved state
    carry.restore(runs, saved, "a")
    assert (runs / "a/last.pt").read_text() == "epoch 9"
    carry.save(runs, saved, ["a"])
    assert (saved / "a/last.pt").read_text() == "epoch 9" and not (saved / "a.tmp").exists()
    (runs / "a" / "done.json").write_text("{}")  # finished here, its row not yet in the committed table
    carry.save(runs, saved, ["a"])
    assert (saved / "a/last.pt").read_text() == "epoch 9"
    carry.save(runs, saved, ["a"], done={"a"})
    assert not (saved / "a").exists()
