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


def test_herding_targets_are_the_herding_coreset_in_its_order(digits):
    from edgecond.coreset import herding_coreset
    from edgecond.warmstart import herding_targets

    coreset, _ = herding_coreset(digits, 5, seed=1, progress=False)
    t = herding_targets(digits, 5, seed=1)
    assert t.shape == (digits.num_classes, 5, *digits.image_shape)
    assert torch.equal(t.flatten(0, 1), coreset.images()[0])
    n = len(digits.class_images(0))  # more instances than a class has images: the order cycles
    long = herding_targets(digits, n + 2, seed=1)
    assert torch.equal(long[0, n:], long[0, :2])


def test_a_herding_warm_start_fits_its_targets_and_a_bad_choice_is_refused(digits):
    from edgecond.warmstart import herding_targets

    cont = build("hmn", digits, 2, seed=0)
    target = herding_targets(digits, cont.instances_per_class, seed=0).flatten(0, 1)
    before = ((cont.images()[0] - target) ** 2).mean().item()
    report = warm_start(cont, digits, 200, seed=0, targets="herding")
    assert report["targets"] == "herding" and report["targets_seconds"] > 0
    assert ((cont.images()[0] - target) ** 2).mean().item() < 0.5 * before
    with pytest.raises(ValueError, match="warm_targets"):
        warm_start(cont, digits, 10, targets="kmeans")
    with pytest.raises(Exception, match="warm_targets"):
        cfg_for("hmn", settings={"match.warm_targets": "kmeans"})


def test_a_warm_start_shows_its_progress_when_asked_and_only_then(digits, capsys):
    cont = build("hmn", digits, 2)
    warm_start(cont, digits, 20, seed=0)
    assert capsys.readouterr().err == ""
    warm_start(cont, digits, 20, seed=0, progress=True)
    err = capsys.readouterr().err  # not a terminal: a plain line at the end (progress.py)
    assert "warm start: 20/20 steps, mse=" in err


def test_a_cosine_warm_start_anneals_its_rate_to_zero_and_a_bad_schedule_is_refused(digits, monkeypatch):
    rates = []
    step = torch.optim.Adam.step

    def recording(self, *a, **k):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    for schedule in ("constant", "cosine"):
        rates.clear()
        report = warm_start(build("hmn", digits, 2, seed=1), digits, 50, seed=1, lr=0.01, lr_schedule=schedule)
        assert report["lr_schedule"] == schedule and report["mse_last"] < report["mse_first"]
        assert len(rates) == 50 and rates[0] == pytest.approx(0.01)
        if schedule == "constant":
            assert set(rates) == {0.01}
        else:
            assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < 1e-4
    with pytest.raises(ValueError, match="warm_lr_schedule"):
        warm_start(build("hmn", digits, 2), digits, 5, lr_schedule="linear")
    with pytest.raises(Exception, match="warm_lr_schedule"):
        cfg_for("hmn", settings={"match.warm_lr_schedule": "linear"})
