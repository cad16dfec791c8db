import torch

from edgecond.coreset import herding_order
from edgecond.matching import Matcher
from edgecond.multisize import MLSState, SubsetLoss, frozen_size, herding_prefix_order, prefix_distances, select_mls
from helpers import build, tiny



def subset_loss(m: Matcher) -> SubsetLoss:
    return next(t for t in m.terms if isinstance(t, SubsetLoss))


def test_prefix_distances_match_definition():
    fr, fs = torch.randn(7, 5), torch.randn(4, 5)
    d = prefix_distances(fr, fs)
    for n in range(1, 5):
        assert torch.allclose(d[n - 1], ((fr.mean(0) - fs[:n].mean(0)) ** 2).sum())


def test_mls_selection_follows_rate_of_change():
    # subset 3's distance moved most between the two measurements (Eq. 8-9)
    prev = torch.tensor([4.0, 3.0, 2.5, 2.0])
    now = torch.tensor([3.9, 2.9, 0.5, 1.8])
    assert select_mls(now, prev) == 3
    st = MLSState(candidates=4)
    st.observe(prev)
    st.end_period(10)
    assert st.mls == 1 and st.frozen == []  # forced to 1 until two measurements exist
    st.observe(now * 0.5)
    st.observe(now * 1.5)  # averaged over the period -> now
    st.end_period(20)
    assert st.mls == 3 and st.frozen == [1] and st.frozen_now == 1
    assert frozen_size([1, 3], 2) == 1 and frozen_size([2, 3], 2) == 0


def test_freezing_keeps_frozen_instances_unchanged_when_mls_grows(digits):
    cont = build("pixel", digits, 6)
    m = Matcher(cont, digits, tiny("pixel", digits, 6, multisize=True))
    subset_loss(m).mls.frozen, subset_loss(m).mls.mls = [2], 4  # the MLS grew from 2 to 4: S_[2] is frozen
    before = cont.pixels.detach().clone()
    m.outer_iteration(0)
    after = cont.pixels.detach()
    assert torch.equal(after[:, :2], before[:, :2])  # frozen prefix untouched
    assert not torch.equal(after[:, 2:], before[:, 2:])  # the rest learned


def test_hmn_freezes_instance_memories_only(digits):
    cont = build("hmn", digits, 5)
    m = Matcher(cont, digits, tiny("hmn", digits))
    subset_loss(m).mls.frozen, subset_loss(m).mls.mls = [1], 3
    inst, dec = cont.instance_memory.detach().clone(), cont.decoder[0].weight.detach().clone()
    m.outer_iteration(0)
    assert torch.equal(cont.instance_memory[:, :1], inst[:, :1])
    assert not torch.equal(cont.instance_memory[:, 1:], inst[:, 1:])
    assert not torch.equal(cont.decoder[0].weight, dec)  # shared tiers keep learning


def test_multisize_run_records_mls_and_resumes(digits, tmp_path):
    cfg = tiny("hmn", digits, seed=2, outer=4, mls_interval=1)
    a = build("hmn", digits, 5, seed=2)
    ma = Matcher(a, digits, cfg)
    ma.run(progress=False)
    mls = subset_loss(ma).mls
    assert len(mls.history) == 4 and all(1 <= h[1] <= mls.candidates for h in mls.history)
    b = build("hmn", digits, 5, seed=2)
    Matcher(b, digits, cfg, out=tmp_path).run(progress=False, stop_after=2)
    c = build("hmn", digits, 5, seed=2)
    mc = Matcher(c, digits, cfg, out=tmp_path)
    assert mc.load_checkpoint()
    mc.run(progress=False)
    assert subset_loss(mc).mls.history == mls.history
    for x, y in zip(a.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y)


def test_subset_sizes():
    from edgecond.evaluation import subset_sizes

    assert subset_sizes("all", 5) == [1, 2, 3, 4, 5]
    big = subset_sizes("all", 278)
    assert big[0] == 1 and big[-1] == 278 and len(big) <= 12
    assert subset_sizes("5,1,2", 10) == [1, 2, 5]


def test_hmn_subset_loss_trains_the_subsets_own_memories_only(digits):
    from edgecond.augment import Augment
    from edgecond.losses import class_step_loss
    from edgecond.models import build_convnet

    cont = build("hmn", digits, 5)
    net = build_convnet(digits.image_shape, digits.num_classes, width=16)
    real, subset = digits.class_images(3)[:16], torch.arange(2)
    # the same images either way: generate_own only detaches
    cls = torch.full((2,), 3)
    assert torch.equal(cont.generate_own(cls, subset), cont.generate(cls, subset))
    for own in (True, False):
        cont.zero_grad(set_to_none=True)
        class_step_loss(cont, net, real, 3, subset, Augment(flip=False), torch.Generator().manual_seed(0),
                        "mse", own=own).backward()
        assert cont.instance_memory.grad[3, :2].abs().sum() > 0  # the subset's own memories learn
        assert cont.instance_memory.grad[3, 2:].abs().sum() == 0 and cont.instance_memory.grad[:3].abs().sum() == 0
        shared = [cont.decoder[0].weight, cont.class_memory, cont.dataset_memory]
        assert all((p.grad is None) == own for p in shared)  # shared tiers: untouched by default


def test_herding_order_continues_a_fixed_start_towards_a_target():
    g = torch.Generator().manual_seed(0)
    f, target = torch.randn(20, 6, generator=g), torch.randn(6, generator=g)
    order = herding_order(f, 20, target=target, start=3)
    assert order[:3].tolist() == [0, 1, 2] and sorted(order.tolist()) == list(range(20))
    # the 4th pick is the row that brings the 4-image mean closest to the target
    cand = ((f[:3].sum(0) + f[3:]) / 4 - target).norm(dim=1)
    assert int(order[3]) == 3 + int(cand.argmin())
    # greedy prefix means track the target better than the given order does, on average over sizes
    dist = lambda idx: torch.stack([(f[idx[:k]].mean(0) - target).norm() for k in range(1, 21)]).mean()
    assert dist(order) < dist(torch.arange(20))


def test_herding_prefix_order_keeps_the_trained_prefix(digits):
    cont = build("hmn", digits, 5)
    order = herding_prefix_order(cont, digits, protect=2, feature_steps=10)
    n = cont.instances_per_class
    assert order.shape == (digits.num_classes, n)
    assert (order[:, :2] == torch.tensor([0, 1])).all()
    assert all(sorted(row.tolist()) == list(range(n)) for row in order)
    before = cont.generate(torch.zeros(n, dtype=torch.long), order[0]).detach()
    cont.select_instances(order)
    assert torch.equal(cont.generate(torch.zeros(n, dtype=torch.long), torch.arange(n)).detach(), before)
