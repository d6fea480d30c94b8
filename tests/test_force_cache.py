"""The forces a family computes with its energy are kept for the model and batch they belong to: every
model derived from a loaded one (a masked copy, a pruned one) shares its adapter, and must never be
handed another model's forces (issue 36: the cache was keyed on the batch alone)."""
import copy
import warnings
from dataclasses import replace

import torch
import pytest

pytest.importorskip("sevenn")

from irrepprobe.adapters import get_adapter  # noqa: E402
from irrepprobe.data.structures import qm9_structures  # noqa: E402


@pytest.fixture(scope="module")
def two(qm9):
    adapter = get_adapter("sevenn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seven = adapter.load("7net-0", trust=True)
    other = replace(seven, module=copy.deepcopy(seven.module))  # the same adapter object, other weights
    torch.manual_seed(0)
    with torch.no_grad():
        for p in other.module.parameters():
            p.add_(0.2 * torch.randn_like(p) * (p.abs().mean() + 1e-3))
    batch = next(iter(adapter.batches(seven, qm9_structures(qm9, torch.arange(40, 44)), 4)))
    return adapter, seven, other, batch


def test_forces_after_another_models_pass_are_this_models(two):
    adapter, seven, other, batch = two
    assert other.adapter is seven.adapter
    adapter.predict(seven, batch, forces=True)
    f_seven = adapter.forces(seven, batch).detach().clone()
    f_other = adapter.forces(other, batch).detach().clone()  # the last pass was the other model's
    fresh = get_adapter("sevenn")  # an adapter with no cache at all
    expected = fresh.forces(replace(other, adapter=fresh), batch).detach()
    assert torch.allclose(f_other, expected, atol=1e-6)
    assert not torch.allclose(f_other, f_seven, atol=1e-3)  # the weights moved: so did the forces
    # and back: the first model's forces again, not the second's
    assert torch.allclose(adapter.forces(seven, batch), f_seven, atol=1e-6)


def test_forces_of_a_batch_are_kept_only_for_that_batch(two, qm9):
    adapter, seven, _, batch = two
    b2 = next(iter(adapter.batches(seven, qm9_structures(qm9, torch.arange(50, 54)), 4)))
    adapter.predict(seven, batch, forces=True)
    f = adapter.forces(seven, b2)
    assert f.shape[0] == b2.n_atoms
