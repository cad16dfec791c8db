"""Instances decoupled from the matching batch: with `match.instance_sampling=cycle` a class step
matches `syn_batch` of a class's instances and an outer iteration visits every instance evenly,
however many the budget holds; the draw depends on (seed, outer, inner, class) alone."""

from collections import Counter

import pytest
import torch

from edgecond.condense import condense, settings_for
from edgecond.kinds import get, sized_config, stored_as
from edgecond.matching import Matcher


def matcher(digits, sampling: str, seed: int = 0) -> Matcher:
    cfg = settings_for(digits, "hmn", 10, settings={"container.max_instances": 0, "match.syn_batch": 16,
                                                    "match.inner": 5, "match.instance_sampling": sampling,
                                                    "match.multisize": False, "seed": seed})
    kind = get("hmn")
    cont = stored_as(kind.build(digits, sized_config(kind, digits, cfg), torch.Generator().manual_seed(0)), cfg, digits)
    return Matcher(cont, digits, cfg)


def test_cycle_visits_every_instance_evenly_within_an_outer_iteration(digits):
    m = matcher(digits, "cycle")
    k, b, inner = m.container.instances_per_class, m.m.syn_batch, m.m.inner
    assert k > b  # the budget holds more instances than a step matches
    for c in (0, 7):
        visits = Counter()
        for i in range(inner):
            m._at = (3, i)
            idx = m._syn_indices(c, torch.Generator().manual_seed(i))
            assert len(idx) == b == len(set(idx.tolist()))
            visits.update(idx.tolist())
        counts = [visits.get(j, 0) for j in range(k)]
        assert max(counts) - min(counts) <= 1 and sum(counts) == inner * b, counts


def test_cycle_draws_depend_on_the_step_alone(digits):
    a, b = matcher(digits, "cycle"), matcher(digits, "cycle")
    a._at = b._at = (2, 1)
    assert torch.equal(a._syn_indices(4, torch.Generator().manual_seed(0)),
                       b._syn_indices(4, torch.Generator().manual_seed(99)))  # not the shared stream
    a._at = (3, 1)
    assert not torch.equal(a._syn_indices(4, torch.Generator()), b._syn_indices(4, torch.Generator()))


@pytest.mark.parametrize("sampling", ["random", "cycle"])
def test_an_uncapped_hmn_condenses_with_either_sampling(digits, sampling):
    settings = {"container.max_instances": 0, "match.syn_batch": 16, "match.outer": 1, "match.inner": 2,
                "match.net_steps": 1, "match.warm_start": 0, "match.multisize": False,
                "match.instance_sampling": sampling}
    res = condense(digits, "hmn", 10, settings=settings, progress=False)
    assert res.container.instances_per_class > 16 and res.report["loss_curve"][0] > 0
