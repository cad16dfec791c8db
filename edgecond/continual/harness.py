"""Run class-incremental strategies at equal buffer bytes and score them, from public parts only:
Avalanche's strategies, generator and loggers, and this package's plugins and metrics
(`plugins.py`, `metrics.py`) -- what a user would assemble.

Strategies are found by name in `strategies.py`'s registry (`edgecond strategies` lists them,
with what each stores and how its bytes are counted).

After every experience the whole test stream is evaluated; scores come from
`metrics.ClassIncrementalAccuracy` (accuracy matrix from Avalanche's Accuracy, final and
average incremental accuracy on seen classes, forgetting) and `metrics.ReplayCost` (buffer
bytes, condense and regenerate seconds), the values Avalanche's loggers record.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import LOGGERS, ContinualConfig
from ..data import Dataset
from ..models import build_convnet
from .metrics import ClassIncrementalAccuracy, ReplayCost, class_incremental_scores
from .scenario import build_stream
from ..budget import ipc_bytes
from .strategies import REGISTRY, Setup, get

STRATEGIES = REGISTRY  # name -> Strategy (strategies.py)
def _evaluator(cfg: ContinualConfig, name: str, seed: int, extra: list):
    """Avalanche's EvaluationPlugin with our metrics (`extra`), Avalanche's accuracy per experience,
    and the chosen loggers, each writing under log_dir/<strategy>-s<seed>/. Returns (plugin,
    things to close)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
        from avalanche.logging import CSVLogger, TensorboardLogger, TextLogger
        from avalanche.training.plugins import EvaluationPlugin

    bad = [n for n in cfg.loggers if n not in LOGGERS]
    if bad:
        raise ValueError(f"unknown logger {bad[0]!r}; choose from {', '.join(LOGGERS)}")
    metrics = [accuracy_metrics(experience=True), *extra]
    if not cfg.loggers:
        return EvaluationPlugin(*metrics, loggers=[]), []
    if cfg.log_dir is None:
        raise ValueError("Avalanche loggers need a log directory (ContinualConfig.log_dir)")
    where = Path(cfg.log_dir) / f"{name}-s{seed}"
    where.mkdir(parents=True, exist_ok=True)
    loggers, files = [], []
    for n in cfg.loggers:
        if n == "text":
            files.append(open(where / "log.txt", "w"))
            loggers.append(TextLogger(files[-1]))
        elif n == "csv":
            loggers.append(CSVLogger(log_folder=str(where / "csv")))
        else:
            loggers.append(TensorboardLogger(tb_log_dir=str(where / "tensorboard")))
    metrics += [accuracy_metrics(epoch=True, stream=True), loss_metrics(epoch=True, experience=True, stream=True)]
    files += [lg for lg in loggers if isinstance(lg, CSVLogger)]  # it keeps two files open
    return EvaluationPlugin(*metrics, loggers=loggers), files


def strategy_settings(name: str, data: Dataset, cfg: ContinualConfig) -> str | None:
    """What besides ContinualConfig decides a strategy's result: for the HMN strategies, the digest
    of the condensation settings in force (preset defaults included; config.settings_digest);
    None for the others."""
    from ..condense import settings_for
    from ..config import settings_digest

    precision = get(name).condenses
    if precision is None:
        return None
    settings = {**cfg.condense_settings, "precision": precision}
    return settings_digest(settings_for(data, "hmn", cfg.ipc, preset=cfg.preset, settings=settings))


def run_strategy(name: str, data: Dataset, cfg: ContinualConfig, seed: int, workdir: Path,
                 device: str = "cpu") -> dict:
    with warnings.catch_warnings():  # Avalanche 0.6 warns on every experience (deprecations, no loggers)
        warnings.simplefilter("ignore")
        return _run_strategy(name, data, cfg, seed, Path(workdir), device)


def _run_strategy(name: str, data: Dataset, cfg: ContinualConfig, seed: int, workdir: Path, device: str) -> dict:
    spec = get(name)
    from avalanche.training.determinism.rng_manager import RNGManager

    # Python's, NumPy's and torch's global generators: Avalanche's random exemplar selection
    # draws from Python's `random`, so seeding torch alone left replay buffers unreproducible
    RNGManager.set_random_seeds(seed)
    bench, groups, stats = build_stream(data, cfg.experiences, seed, cfg.normalise)
    model = build_convnet(data.image_shape, data.num_classes, width=cfg.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    setup = Setup(model, opt, {}, cfg, data, workdir, seed, device, stats, groups)
    plugins = spec.plugins(setup)
    policy = plugins[0].storage_policy if plugins else None
    scores_metric, cost = ClassIncrementalAccuracy(), ReplayCost(policy) if policy else None
    evaluator, files = _evaluator(cfg, name, seed, [scores_metric] + ([cost] if cost else []))
    setup.common = dict(criterion=torch.nn.CrossEntropyLoss(), train_mb_size=cfg.batch_size,
                        train_epochs=cfg.epochs, eval_mb_size=512, device=device, evaluator=evaluator)
    strategy = spec.make(setup, plugins)
    t0 = time.time()
    try:
        if spec.joint:  # one model for the whole stream: every row of the matrix is its accuracy
            strategy.train(bench.train_stream)
            strategy.eval(bench.test_stream)
            matrix = [scores_metric.matrix[-1]] * len(groups)
            res = {**class_incremental_scores(matrix, [len(g) for g in groups]), "accuracy_matrix": matrix}
        else:
            for exp in bench.train_stream:
                strategy.train(exp)
                strategy.eval(bench.test_stream)
            res = scores_metric.result()
    finally:
        for f in files:
            f.close()
    history = cost.history if cost else []
    return {"strategy": name, "accuracy_matrix": res["accuracy_matrix"],
            **{k: res[k] for k in ("final_accuracy", "average_incremental_accuracy", "forgetting", "seen_accuracy")},
            "buffer_bytes": (spec.held_bytes(strategy, setup) if spec.held_bytes else
                             history[-1]["buffer_bytes"] if history else 0),
            "budget_bytes_fp32": ipc_bytes(cfg.ipc, data.image_shape, data.num_classes), "groups": groups,
            "timings": [{k: v for k, v in h.items() if v is not None} for h in history],
            "seconds": time.time() - t0, "config": asdict(cfg)}
