"""`match.compute_dtype=bf16`: the warm start's generator passes and the matching network's under
bfloat16 autocast agree with fp32 to a stated tolerance -- the container's gradient of a class
step points the same way (cosine >= 0.999) and differs by at most 5 % of its norm; a bf16 warm
start fits its targets within 10 % of fp32's error -- and fp32 stays the default."""

import pytest
import torch

from edgecond.condense import settings_for
from edgecond.config import ConfigError
from edgecond.kinds import get, sized_config, stored_as
from edgecond.matching import Matcher

COSINE, RELATIVE = 0.999, 0.05


def container_gradients(data, dtype: str, ipc: float, classes=(0, 1, 2)) -> list[torch.Tensor]:
    cfg = settings_for(data, "hmn", ipc, settings={"match.compute_dtype": dtype, "match.multisize": False,
                                                   "precision": "int8", "match.net_width": 32})
    kind = get("hmn")
    cont = stored_as(kind.build(data, sized_config(kind, data, cfg), torch.Generator().manual_seed(0)), cfg, data)
    m = Matcher(cont, data, cfg)
    torch.manual_seed(0)
    net, _ = m._network()
    out = []
    for c in classes:
        _, total = m._class_losses(net, c, torch.Generator().manual_seed(c))
        m.opt.zero_grad(set_to_none=True)
        total.backward()
        out.append(torch.cat([p.grad.flatten() for p in cont.parameters() if p.grad is not None]))
    return out


def odd_images(shape=(3, 20, 20), classes=4, per_class=12):
    """A dataset of the shape a user brings, not digits' or CIFAR's."""
    from edgecond.data import Dataset

    g = torch.Generator().manual_seed(0)
    x = torch.rand(classes * per_class, *shape, generator=g)
    y = torch.arange(classes).repeat_interleave(per_class)
    return Dataset(name="odd", x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], x_test=x[:8], y_test=y[:8],
                   classes=[str(i) for i in range(classes)], mean=[0.5] * shape[0], std=[0.25] * shape[0], flip=True)


@pytest.mark.parametrize("which", ["digits", "odd"])
def test_bf16_matching_gradients_agree_with_fp32(digits, which):
    data = digits if which == "digits" else odd_images()
    for a, b in zip(container_gradients(data, "fp32", 5), container_gradients(data, "bf16", 5)):
        assert torch.isfinite(b).all()
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) >= COSINE
        assert (a - b).norm() <= RELATIVE * a.norm()
        assert not torch.equal(a, b)  # bf16 really ran: the passes were not fp32


def test_fp32_is_the_default_and_bf16_matching_runs_and_lowers_its_loss(digits):
    assert settings_for(digits, "hmn", 5).match.compute_dtype == "fp32"
    cfg = settings_for(digits, "hmn", 2, settings={"match.compute_dtype": "bf16", "match.outer": 3, "match.inner": 3,
                                                   "match.net_steps": 1, "match.multisize": False,
                                                   "match.warm_start": 0, "match.net_width": 32})
    kind = get("hmn")
    cont = kind.build(digits, sized_config(kind, digits, cfg), torch.Generator().manual_seed(0))
    losses = Matcher(cont, digits, cfg).run(progress=False)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_an_unknown_compute_dtype_is_refused_before_work(digits):
    with pytest.raises(ConfigError, match="compute_dtype"):
        settings_for(digits, "hmn", 5, settings={"match.compute_dtype": "fp8"})


def test_a_bf16_warm_start_fits_as_well_as_fp32(digits):
    from edgecond.warmstart import warm_start

    cfg = settings_for(digits, "hmn", 5, settings={"match.multisize": False})
    kind = get("hmn")
    fits = {}
    for dtype in ("fp32", "bf16"):
        cont = kind.build(digits, sized_config(kind, digits, cfg), torch.Generator().manual_seed(0))
        fits[dtype] = warm_start(cont, digits, 60, compute_dtype=dtype)
    assert fits["bf16"]["mse_last"] < 0.5 * fits["bf16"]["mse_first"]  # it learns
    assert abs(fits["bf16"]["mse_last"] - fits["fp32"]["mse_last"]) <= 0.1 * fits["fp32"]["mse_last"]
    assert fits["bf16"]["mse_last"] != fits["fp32"]["mse_last"]  # bf16 really ran
