"""The early-stopping rule (issue 40): a minimum relative improvement, and a resumed run that counts by the
rule it resumes under."""
import pytest

from conftest import smoke_config
from irrepprobe.errors import IrrepprobeError
from irrepprobe.train import load_checkpoint, train
from irrepprobe.train.stopping import EarlyStop


def _run(rule, vals):
    return [rule.step(v) for v in vals], rule


def test_any_decrease_improves_without_a_delta():
    better, rule = _run(EarlyStop(patience=3), [1.0, 0.9999, 0.9998, 0.9998, 0.9998, 0.9998])
    assert better == [True, True, True, False, False, False]
    assert rule.stop and rule.stopped_at == 6 and rule.ref == 0.9998


def test_a_creeping_decrease_below_the_delta_does_not_hold_the_run():
    creep = [(1 - 6e-4) ** k for k in range(12)]  # 0.06% better each epoch
    assert not _run(EarlyStop(patience=5), creep)[1].stop  # any decrease: it would go on to the cap
    better, rule = _run(EarlyStop(patience=5, delta=1e-3), creep)
    # 0.1% takes two epochs of creep: every second epoch improves, so the count never reaches 5
    assert better[:5] == [True, False, True, False, True] and not rule.stop
    # 0.3% takes six epochs of creep: patience 5 stops the run at 6, patience 6 sees an improvement at 7
    assert _run(EarlyStop(patience=5, delta=3e-3), creep)[1].stopped_at == 6
    better, rule = _run(EarlyStop(patience=6, delta=3e-3), creep)
    assert [i + 1 for i, b in enumerate(better) if b] == [1, 7] and not rule.stop
    assert rule.ref == pytest.approx(creep[6])


def test_a_large_drop_resets_the_count_and_patience_zero_never_stops():
    _, rule = _run(EarlyStop(patience=2, delta=0.01), [1.0, 0.999, 0.5, 0.499, 0.4999])
    assert rule.bad == 2 and rule.stopped_at == 5 and rule.ref == 0.5
    assert not _run(EarlyStop(patience=0), [1.0] * 50)[1].stop


def test_replay_is_the_same_as_counting_epoch_by_epoch():
    vals = [1.0, 0.8, 0.81, 0.79, 0.7899, 0.80, 0.78, 0.7801, 0.781]
    _, rule = _run(EarlyStop(3, 0.01), vals)
    again = EarlyStop.replay(3, 0.01, vals)
    assert (again.ref, again.bad, again.stopped_at, again.epochs) == (rule.ref, rule.bad, rule.stopped_at, 9)


def test_a_run_resumed_under_a_stricter_rule_stops_by_it(tmp_path):
    quiet = dict(progress=False, log=lambda *a: None)
    train(smoke_config(**{"train.epochs": 2}), tmp_path, **quiet)
    # an improvement must now be a 99% drop: epoch 2 is one epoch without, and patience 1 stops there
    strict = smoke_config(**{"train.epochs": 5, "train.early_stop": 1, "train.early_stop_delta": 0.99})
    result = train(strict, tmp_path, resume=True, **quiet)
    last = load_checkpoint(tmp_path / "last.pt")
    assert len(last["history"]) == 2 and result["epochs_run"] == 2 and result["stopped_at"] == 2
    # the rule's budget keys come from the config it resumes under: without a rule it trains on to 5
    free = smoke_config(**{"train.epochs": 5, "train.early_stop": 0})
    assert train(free, tmp_path, resume=True, **quiet)["epochs_run"] == 5


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2])
def test_the_delta_is_validated(bad):
    with pytest.raises(IrrepprobeError, match="train.early_stop_delta"):
        smoke_config(**{"train.early_stop_delta": bad}).validate()
