import pytest
import torch

from helpers import build, cfg_for
from edgecond.warmstart import real_targets, warm_start


def _mse_to_targets(cont, digits, seed):
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919)
    target = real_targets(digits, cont.instances_per_class, gen)
    x, _ = cont.images()
    return ((x - target.flatten(0, 1)) ** 2).mean().item()


def test_warm_start_fits_real_targets_deterministically(digits):
    a = build("hmn", digits, 2, seed=3)
    before = _mse_to_targets(a, digits, seed=3)
    report = warm_start(a, digits, 200, seed=3)
    after = _mse_to_targets(a, digits, seed=3)
    assert after < 0.5 * before
    assert report["mse_last"] < report["mse_first"]
    b = build("hmn", digits, 2, seed=3)
    warm_start(b, digits, 200, seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_targets_cover_a_class_before_repeating(digits):
    n = len(digits.class_images(0))
    t = real_targets(digits, n + 3, torch.Generator().manual_seed(0))
    first = t[0, :n].flatten(1)
    assert len(torch.unique(first, dim=0)) == len(torch.unique(digits.class_images(0).flatten(1), dim=0))


def test_zero_steps_changes_nothing_and_negative_is_refused(digits):
    cont = build("hmn", digits, 2)
    before = {k: v.clone() for k, v in cont.state_dict().items()}
    assert warm_start(cont, digits, 0) == {"steps": 0}
    assert all(torch.equal(before[k], v) for k, v in cont.state_dict().items())
    with pytest.raises(ValueError, match="warm_start"):
        warm_start(cont, digits, -1)


def test_only_quick_hmn_warm_starts_by_default(digits):
    assert cfg_for("hmn").match.warm_start > 0
    assert cfg_for("hmn", preset="paper").match.warm_start == 0
    assert cfg_for("pixel").match.warm_start == 0
    assert cfg_for("hmn", settings={"match.warm_start": 0}).match.warm_start == 0
