"""The public continual API as an Avalanche user meets it: their own benchmark (Avalanche's
generator over plain tensors, no edgecond Dataset anywhere), a plain strategy, our plugins."""

import io
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("avalanche")

from edgecond.continual import (BufferSchedule, CondensedBuffer, CondensedReplay, ExemplarReplay,  # noqa: E402
                                ipc_bytes)

TINY = {"match.outer": 1, "match.inner": 1, "match.net_steps": 1, "match.warm_start": 300}  # replay worth having
FAST = {**TINY, "match.warm_start": 20}  # plumbing only
SHAPE, CLASSES = (1, 8, 8), 4


def avalanche_stream(x, y, order=(0, 1, 2, 3)):
    """A class-incremental benchmark made the way Avalanche's docs make one: its dataset classes
    over a TensorDataset, its `class_incremental_benchmark` generator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from avalanche.benchmarks.scenarios import class_incremental_benchmark
        from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset

    def dataset(xs, ys):
        return TaskAwareSupervisedClassificationDataset(
            [torch.utils.data.TensorDataset(xs, ys)],
            data_attributes=[DataAttribute(ys.tolist(), "targets"),
                             DataAttribute([0] * len(ys), "targets_task_labels", use_in_getitem=True)])

    return class_incremental_benchmark({"train": dataset(x, y), "test": dataset(x, y)}, class_order=list(order),
                                       num_classes_per_exp=[2, 2])


@pytest.fixture(scope="module")
def plain_tensors():
    """sklearn's digits as [0, 1] pixels, classes 0-3: plain tensors, nothing of edgecond's."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < CLASSES
    x = torch.tensor(d.images[keep] / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(d.target[keep], dtype=torch.long)


def naive(plugins, evaluator=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from avalanche.training import Naive
        from avalanche.training.plugins import EvaluationPlugin

    if evaluator is None:
        with warnings.catch_warnings():  # "no loggers": this test reads the metrics itself
            warnings.simplefilter("ignore")
            evaluator = EvaluationPlugin(loggers=[])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    return Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                 criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=3, eval_mb_size=256,
                 plugins=plugins, evaluator=evaluator)


@pytest.fixture(scope="module")
def trained(plain_tensors):
    """Naive + CondensedReplay over two experiences, replay reads checked torch-free; the text log kept."""
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.logging import TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    from edgecond import io as edgecond_io
    from edgecond.containers.base import Container
    from edgecond.continual import ClassIncrementalAccuracy, ReplayCost

    bench = avalanche_stream(*plain_tensors)
    budget = ipc_bytes(10, SHAPE, CLASSES)
    replay = CondensedReplay(budget, CLASSES, settings=TINY)
    policy = replay.storage_policy
    reads, original = [], CondensedBuffer.buffer.fget

    def torch_free(self):
        def boom(*a, **k):
            raise RuntimeError("replay touched a torch container")
        mp = pytest.MonkeyPatch()
        mp.setattr(Container, "__call__", boom)
        mp.setattr(edgecond_io, "load_container", boom)
        try:
            data = original(self)
        finally:
            mp.undo()
        reads.append(len(data))
        return data

    log = io.StringIO()
    scores = ClassIncrementalAccuracy()
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), scores, ReplayCost(policy),
                                 loggers=[TextLogger(log)])
    strategy = naive([replay], evaluator)
    mp = pytest.MonkeyPatch()
    mp.setattr(CondensedBuffer, "buffer", property(torch_free, CondensedBuffer.buffer.fset))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for exp in bench.train_stream:
                strategy.train(exp)
                strategy.eval(bench.test_stream)
    finally:
        mp.undo()
    return {"policy": policy, "budget": budget, "reads": reads, "log": log.getvalue(), "scores": scores,
            "bench": bench}


def test_replay_is_regenerated_by_onnxruntime_within_the_byte_budget(trained):
    from edgecond_device import Regenerator

    policy = trained["policy"]
    assert max(trained["reads"]) > 0  # the second experience replayed, with torch containers unusable
    assert [m["classes"] for m in policy.models] == [[0, 1], [2, 3]]
    # only the ONNX models stay; the torch run directories are gone
    assert sorted(p.suffix for p in policy.workdir.iterdir()) == [".onnx", ".onnx"]
    assert 0.9 * trained["budget"] <= policy.stored_bytes() <= trained["budget"]
    # the replayed images are exactly the runtime's, mapped back to the stream's pixel space
    m = policy.models[0]
    images, labels = Regenerator(m["path"]).generate()
    expected = images * np.array(m["std"]).reshape(1, -1, 1, 1) + np.array(m["mean"]).reshape(1, -1, 1, 1)
    data = policy.buffer
    got = torch.stack([data[i][0] for i in range(len(labels))]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [int(data[i][1]) for i in range(len(labels))] == [m["classes"][j] for j in labels]


def test_metrics_reach_avalanches_loggers(trained):
    log = trained["log"]
    for name in ("Top1_Acc_Exp", "Top1_Acc_Seen", "Top1_Acc_AvgIncremental", "Forgetting_Max", "BufferBytes",
                 "CondenseTime_Exp", "RegenerateTime_Exp"):
        assert name in log, name
    res = trained["scores"].result()
    assert np.array(res["accuracy_matrix"]).shape == (2, 2)
    # replay keeps the first two classes while learning the next two; the same learner without it does not
    from avalanche.training.plugins import EvaluationPlugin

    from edgecond.continual import ClassIncrementalAccuracy

    plain = ClassIncrementalAccuracy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = naive([], EvaluationPlugin(plain, loggers=[]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exp in trained["bench"].train_stream:
            strategy.train(exp)
            strategy.eval(trained["bench"].test_stream)
    assert res["final_accuracy"] > plain.result()["final_accuracy"] + 0.2


def test_normalisation_uses_only_classes_seen_so_far(plain_tensors):
    x, y = plain_tensors
    x = torch.where((y >= 2).view(-1, 1, 1, 1), 0.7 + 0.3 * x, x)  # later classes: another brightness
    bench = avalanche_stream(x, y)
    policy = CondensedBuffer(ipc_bytes(2, SHAPE, CLASSES), CLASSES, kind="random")
    for exp in bench.train_stream:
        policy.post_adapt(None, exp)
    first, both = x[y < 2], x
    assert policy.models[0]["mean"][0] == pytest.approx(float(first.mean()), abs=1e-5)
    assert policy.models[0]["std"][0] == pytest.approx(float(first.std()), abs=1e-3)
    assert policy.models[1]["mean"][0] == pytest.approx(float(both.mean()), abs=1e-5)
    assert abs(policy.models[0]["mean"][0] - float(both.mean())) > 0.05  # the future would have shown


def test_resize_and_schedule_take_prefixes_without_condensing_again(plain_tensors, monkeypatch):
    from edgecond import condense

    bench = avalanche_stream(*plain_tensors)
    policy = CondensedBuffer(ipc_bytes(10, SHAPE, CLASSES), CLASSES, settings=FAST)
    for exp in bench.train_stream:
        policy.post_adapt(None, exp)
    full = len(policy.buffer)
    monkeypatch.setattr(condense, "condense", lambda *a, **k: pytest.fail("condensed again"))
    policy.resize(None, 12)  # Avalanche's unit: images in all
    assert len(policy.buffer) == 12  # 3 per seen class
    # a schedule resizes before each experience, ahead of the replay plugin's read

    class Strategy:
        class experience:
            current_experience = 1
    BufferSchedule(policy, [50, 5]).before_train_dataset_adaptation(Strategy)
    assert len(policy.buffer) == 20
    policy.resize(None, None)
    assert len(policy.buffer) == full


def test_condensed_buffer_fits_avalanches_own_replay_plugin():
    """`ReplayPlugin(mem_size=M, storage_policy=P)` asserts P.max_size == M: ours is in images too."""
    from avalanche.training.plugins import ReplayPlugin

    ReplayPlugin(mem_size=200, storage_policy=CondensedBuffer(ipc_bytes(1, SHAPE, CLASSES), CLASSES, max_size=200))


def test_exemplar_replay_holds_uint8_images_at_equal_bytes(plain_tensors):
    bench = avalanche_stream(*plain_tensors)
    replay = ExemplarReplay(ipc_bytes(10, SHAPE, CLASSES), CLASSES)  # the fp32 bytes of 10 IPC: 40 uint8 images
    strategy = naive([replay])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy.train(bench.train_stream[0])
    assert replay.storage_policy.per_class == 40
    assert replay.storage_policy.stored_bytes() == 2 * 40 * 64


def test_another_kind_and_precision(plain_tensors):
    bench = avalanche_stream(*plain_tensors)
    budget = ipc_bytes(2, SHAPE, CLASSES)
    policy = CondensedBuffer(budget, CLASSES, kind="idc", precision="fp16", settings=FAST)
    policy.post_adapt(None, bench.train_stream[0])
    assert policy.stored_bytes() <= budget // 2
    assert len(policy.buffer) > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "nope"}, "nope"),
    ({"precision": "fp8"}, "unknown precision"),
    ({"mean": [0.5]}, "both mean and std"),
])
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CondensedBuffer(1000, 4, **kwargs)


def test_unnormalised_stream_without_statistics_is_refused(plain_tensors):
    x, y = plain_tensors
    bench = avalanche_stream(x * 255, y)
    with pytest.raises(ValueError, match="not \\[0, 1\\] pixels"):
        CondensedBuffer(1000, CLASSES, settings=FAST).post_adapt(None, bench.train_stream[0])


def test_an_interrupted_condensation_resumes_from_its_checkpoint(plain_tensors, tmp_path):
    """A run killed after its last checkpoint but before writing the container resumes, not restarts."""
    import json

    from edgecond.io import load_container

    exp = avalanche_stream(*plain_tensors).train_stream[0]
    settings = {"match.outer": 2, "match.inner": 1, "match.net_steps": 1, "match.warm_start": 0,
                "match.checkpoint_every": 1}
    policy = CondensedBuffer(ipc_bytes(10, SHAPE, CLASSES), CLASSES, settings=settings, workdir=tmp_path)
    policy.post_adapt(None, exp)
    onnx_path = policy.models[0]["path"]
    run = onnx_path.with_suffix("")
    first, _ = load_container(run)
    first_matching_s = json.loads((run / "report.json").read_text())["matching_seconds"]
    (run / "container.safetensors").unlink()
    onnx_path.unlink()
    again = CondensedBuffer(ipc_bytes(10, SHAPE, CLASSES), CLASSES, settings=settings, workdir=tmp_path)
    again.post_adapt(None, exp)
    assert again.models[0]["path"] == onnx_path and onnx_path.is_file()
    rep = json.loads((run / "report.json").read_text())
    assert rep["resumed"] is True
    assert rep["condense_seconds"] >= first_matching_s  # the time before the interruption still counts
    second, _ = load_container(run)
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k


def blobs_28(classes=4, per_class=40, seed=0):
    """An MNIST-shaped stream made here (1x28x28 [0, 1] pixels): a blob whose place is the class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    xs, ys = [], []
    for c in range(classes):
        cy, cx = 6 + 5 * c, 22 - 5 * c
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
        xs.append(np.clip(blob + rng.normal(0, 0.1, (per_class, 28, 28)), 0, 1))
        ys += [c] * per_class
    return torch.tensor(np.concatenate(xs), dtype=torch.float32).unsqueeze(1), torch.tensor(ys)


def test_default_plugin_replays_a_28px_stream_from_onnxruntime(monkeypatch):
    """The README's plugin with its defaults (an int8 HMN) on 1x28x28 images: both experiences
    train, the second replays the first's images as onnxruntime regenerates them."""
    from edgecond_device import Regenerator

    x, y = blobs_28()
    bench = avalanche_stream(x, y)
    # the default plugin's storage and kind, on the shortest schedule (the layout is what is tested)
    settings = {**FAST, "match.multisize": False, "prefix_order": "none", "match.syn_batch": 16,
                "match.real_batch": 16, "match.net_width": 16}
    replay = CondensedReplay(ipc_bytes(10, (1, 28, 28), CLASSES), CLASSES, settings=settings)
    assert replay.storage_policy.precision == "int8"
    reads, original = [], CondensedBuffer.buffer.fget
    monkeypatch.setattr(CondensedBuffer, "buffer", property(lambda self: reads.append(original(self)) or reads[-1],
                                                            CondensedBuffer.buffer.fset))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from avalanche.training import Naive
        from avalanche.training.plugins import EvaluationPlugin
        strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                         criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=1,
                         evaluator=EvaluationPlugin(loggers=[]), plugins=[replay])
        for exp in bench.train_stream:
            strategy.train(exp)
    policy = replay.storage_policy
    assert [m["classes"] for m in policy.models] == [[0, 1], [2, 3]]
    replayed = [r for r in reads if len(r)]
    assert replayed, "the second experience replayed nothing"
    m = policy.models[0]
    images, _ = Regenerator(m["path"]).generate()
    assert images.shape[1:] == (1, 28, 28) and len(replayed[0]) == len(images)
    expected = images * np.array(m["std"]).reshape(1, -1, 1, 1) + np.array(m["mean"]).reshape(1, -1, 1, 1)
    got = torch.stack([replayed[0][i][0] for i in range(len(images))]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_failed_export_names_the_experience_the_model_and_the_way_out(plain_tensors, monkeypatch):
    from edgecond import export
    from edgecond.continual import CondensedReplayError

    def failing(*a, **k):
        raise export.ExportError("onnxruntime (.onnx) differs from torch by 0.09 (> 1e-05) for int8; nothing written")

    monkeypatch.setattr(export, "export_onnx", failing)
    exp = avalanche_stream(*plain_tensors).train_stream[0]
    policy = CondensedBuffer(ipc_bytes(10, SHAPE, CLASSES), CLASSES, settings=FAST)  # a temporary workdir
    with pytest.raises(CondensedReplayError) as err:
        policy.post_adapt(None, exp)
    message = str(err.value)
    assert "\n" not in message and "exporting experience 0 failed (ExportError: onnxruntime" in message
    run = next(p for p in policy.workdir.iterdir() if p.is_dir())
    assert f"model file {run}.onnx was not written" in message and f"workdir='{policy.workdir}'" in message
    assert (run / "container.safetensors").is_file() and not run.with_suffix(".onnx").exists()
    del policy  # a failure keeps the temporary workdir: the run resumes from it
    import gc
    gc.collect()
    assert (run / "container.safetensors").is_file()
    monkeypatch.undo()
    again = CondensedBuffer(ipc_bytes(10, SHAPE, CLASSES), CLASSES, settings=FAST, workdir=run.parent)
    again.post_adapt(None, exp)  # exports the kept container, condenses nothing
    assert again.models[0]["path"] == run.with_suffix(".onnx") and again.models[0]["path"].is_file()
    import shutil
    shutil.rmtree(run.parent)


def test_replayed_items_take_the_label_type_of_the_stream_they_are_collated_with():
    """Avalanche's own tensor datasets give int labels, a stream over a plain TensorDataset 0-d
    tensors; a default collate of both fails, so the replay dataset copies the stream's."""
    from edgecond.continual.scenario import tensor_dataset
    from edgecond.continual.storage import replay_dataset

    x, y = torch.rand(6, *SHAPE), torch.tensor([0, 1, 2, 3, 0, 1])
    for tensor_labels in (False, True):
        stream = tensor_dataset(x, y, tensor_labels=tensor_labels)
        replay = replay_dataset(x[:2], y[:2], like=stream)
        assert isinstance(replay[0][1], torch.Tensor) == tensor_labels == isinstance(stream[0][1], torch.Tensor)
        batch = next(iter(torch.utils.data.DataLoader(torch.utils.data.ConcatDataset([stream, replay]), batch_size=8)))
        assert batch[1].tolist() == y.tolist() + y[:2].tolist()
