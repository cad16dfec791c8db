import dataclasses

import pytest
import torch

from edgecond.budget import solve_hmn
from helpers import build
from edgecond.config import PruneConfig
from edgecond.pruning import keep_indices, margins, prune_container

FAST = PruneConfig(method="double-end", betas=(0.0, 0.5), aum_steps=40, aum_every=10, select_steps=30)


def test_margin_is_assigned_minus_best_other():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    assert torch.allclose(margins(logits, torch.tensor([1, 0])), torch.tensor([3.0, -3.0]))


def test_double_end_drops_both_ends_in_order():
    aum = torch.tensor([[5.0, -3.0, 0.5, 9.0, 1.0, -1.0, 2.0, 8.0, 0.0, 3.0]])
    keep = keep_indices(aum, remove=4, method="double-end", beta=0.5)
    # floor(0.5*4)=2 hardest (-3 at 1, -1 at 5) and 2 easiest (9 at 3, 8 at 7) go
    assert keep.tolist() == [[0, 2, 4, 6, 8, 9]]
    assert keep_indices(aum, 4, "easy").tolist() == [[1, 2, 4, 5, 6, 8]]
    assert keep_indices(aum, 3, "double-end", beta=0.0).tolist() == keep_indices(aum, 3, "easy").tolist()
    prot = keep_indices(aum, 4, "double-end", beta=0.5, protect=3)
    assert prot[0, :3].tolist() == [0, 1, 2]  # the protected prefix survives whatever its AUM
    r = keep_indices(aum, 4, "random", generator=torch.Generator().manual_seed(0))
    assert r.shape == (1, 6) and torch.all(r[0, 1:] > r[0, :-1])
    with pytest.raises(ValueError, match="cannot remove"):
        keep_indices(aum, 10, "easy")


@pytest.fixture(scope="module")
def pruned(digits):
    over = build("hmn", digits, 5, over_budget=0.1)
    before = over.instances_per_class
    target = solve_hmn(digits.image_shape, digits.num_classes, 5).instances
    # beta selection must work without the test split: take it away
    blind = dataclasses.replace(digits, x_test=None, y_test=None)
    report = prune_container(over, target, blind, FAST, seed=0)
    return over, before, target, report


def test_pruned_container_fits_the_budget_exactly(pruned, digits):
    hmn, before, target, report = pruned
    assert before > target
    assert hmn.instances_per_class == target
    assert hmn.stored_floats() == solve_hmn(digits.image_shape, 10, 5).total_floats <= 5 * 640
    assert report["removed_per_class"] == before - target
    assert all(len(k) == target for k in report["kept"])


def test_beta_chosen_on_validation_only(pruned):
    _, _, _, report = pruned
    assert set(report["beta_grid_val_accuracy"]) == {0.0, 0.5}
    assert report["beta"] in (0.0, 0.5)


def test_pruning_keeps_survivors_unchanged(digits):
    over = build("hmn", digits, 5, over_budget=0.1)
    with torch.no_grad():
        full, _ = over.images()
    n = over.instances_per_class
    report = prune_container(over, n - 3, digits, dataclasses.replace(FAST, method="random"), seed=0)
    with torch.no_grad():
        after, _ = over.images()
    kept = torch.tensor(report["kept"])
    ref = full.view(10, n, *full.shape[1:])[torch.arange(10)[:, None], kept]
    assert torch.allclose(after.view(10, n - 3, *after.shape[1:]), ref, atol=1e-6)
