import torch

from edgecond.augment import Augment, cutmix
from edgecond.condense import condense
from edgecond.evaluation import EvalConfig, evaluate_images


def test_shared_augmentation_is_one_draw():
    x = torch.randn(1, 3, 16, 16).repeat(6, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    y = Augment()(x, generator=g, shared=True)
    assert torch.allclose(y, y[:1].expand_as(y))
    z = Augment()(x, generator=torch.Generator().manual_seed(0), shared=False)
    assert not torch.allclose(z, z[:1].expand_as(z))


def test_augmentation_is_differentiable_and_seeded():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    a = Augment(flip=False)(x, generator=torch.Generator().manual_seed(5))
    b = Augment(flip=False)(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cutmix_mixes_labels():
    x, y = torch.randn(8, 3, 8, 8), torch.arange(8)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        xm, ya, yb, lam = cutmix(x, y, generator=g, prob=1.0)
        assert 0 <= lam <= 1 and torch.equal(ya, y)


def test_random_coreset_learns_digits(digits):
    """5 random digits per class, one short training run: far above chance (0.1)."""
    res = condense(digits, "random", 5, seed=0, progress=False)
    x, y = res.container.images()
    ev = evaluate_images(x, y, digits, EvalConfig(steps=300), seeds=1, progress=False)
    assert ev["accuracy_mean"] > 0.7
