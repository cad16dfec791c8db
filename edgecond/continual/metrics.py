"""Class-incremental scores and replay costs as Avalanche metrics, so that Avalanche's loggers
(Text, TensorBoard, ...) record them beside its own.

The accuracy matrix A[t][j] (after training experience t, on test experience j) is
Avalanche's Top1 accuracy per experience (its `Accuracy` metric, the same definition as
`accuracy_metrics(experience=True)`'s Top1_Acc_Exp, which Avalanche's CSVLogger writes). From it,
after every evaluation of the test stream:

* Top1_Acc_Seen -- accuracy on the classes seen so far: the mean of A[t][j] over j <= t,
  weighted by each experience's class count (Avalanche's Top1_Acc_Stream averages over unseen
  classes too). After the last experience this is the *final accuracy*.
* Top1_Acc_AvgIncremental -- the mean of Top1_Acc_Seen over the experiences trained so far.
* Forgetting_Max -- the mean over j < t of max_{t' < t} A[t'][j] - A[t][j] (Chaudhry et al.;
  Avalanche's ExperienceForgetting subtracts from the *first* accuracy instead of the best).

`ReplayCost` reports, after each training experience, a storage policy's bytes and the
seconds spent condensing and regenerating (`storage.py`).
"""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from avalanche.evaluation import PluginMetric
    from avalanche.evaluation.metric_results import MetricValue
    from avalanche.evaluation.metrics import Accuracy


def class_incremental_scores(matrix: list[list[float]], sizes: list[int]) -> dict:
    """Seen-class accuracy per row, its mean (average incremental accuracy) and forgetting, from the
    first len(matrix) rows of A[t][j] (rows may hold unseen experiences too; they are ignored)."""
    e = len(matrix)  # rows evaluated on the seen experiences alone are padded with "not measured"
    a = np.array([(list(row) + [np.nan] * e)[:e] for row in matrix], dtype=float)
    w = np.array(sizes[:e], dtype=float)
    seen = [float((a[t, :t + 1] * w[:t + 1]).sum() / w[:t + 1].sum()) for t in range(e)]
    forgetting = float(np.mean([np.nanmax(a[:e - 1, j]) - a[e - 1, j] for j in range(e - 1)])) if e > 1 else 0.0
    return {"final_accuracy": seen[-1], "average_incremental_accuracy": float(np.mean(seen)),
            "forgetting": forgetting, "seen_accuracy": seen}


class ClassIncrementalAccuracy(PluginMetric[dict]):
    """A[t][j] and the scores above; `matrix` and `sizes` hold what was measured."""

    def __init__(self):
        super().__init__()
        self.matrix: list[list[float]] = []
        self.sizes: dict[int, int] = {}  # test experience -> number of its classes
        self._row: dict[int, Accuracy] = {}

    def reset(self) -> None:
        self._row = {}

    def result(self) -> dict:
        if not self.matrix:
            return {}
        sizes = [self.sizes[j] for j in range(len(self.matrix[-1]))]
        return {**class_incremental_scores(self.matrix, sizes), "accuracy_matrix": self.matrix}

    def before_eval(self, strategy):
        self.reset()

    def after_eval_iteration(self, strategy):
        j = strategy.experience.current_experience
        self._row.setdefault(j, Accuracy()).update(strategy.mb_output, strategy.mb_y)

    def after_eval_exp(self, strategy):
        self.sizes[strategy.experience.current_experience] = len(strategy.experience.classes_in_this_experience)

    def after_eval(self, strategy):
        t = strategy.clock.train_exp_counter - 1  # the last experience trained
        if t < 0 or any(j not in self._row for j in range(t + 1)):
            return None  # this evaluation did not cover every experience seen so far
        row = [float(self._row[j].result()) for j in range(max(self._row) + 1) if j in self._row]
        self.matrix = self.matrix[:t] + [row]  # an evaluation repeated after the same experience replaces it
        if len(self.matrix) != t + 1:  # rows missing: evaluated only after some experiences
            return None
        res, x = self.result(), strategy.clock.train_iterations
        return [MetricValue(self, "Top1_Acc_Seen/eval_phase/test_stream", res["seen_accuracy"][-1], x),
                MetricValue(self, "Top1_Acc_AvgIncremental/eval_phase/test_stream",
                            res["average_incremental_accuracy"], x),
                MetricValue(self, "Forgetting_Max/eval_phase/test_stream", res["forgetting"], x)]

    def __str__(self):
        return "ClassIncrementalAccuracy"


class ReplayCost(PluginMetric[dict]):
    """A storage policy's stored bytes, and its condense/regenerate seconds for the experience just
    trained (the seconds only where the policy records them, as CondensedBuffer does)."""

    def __init__(self, storage_policy):
        super().__init__()
        self.policy = storage_policy
        self.history: list[dict] = []

    def reset(self) -> None:
        pass

    def result(self) -> dict:
        return self.history[-1] if self.history else {}

    def after_training_exp(self, strategy):
        t = strategy.experience.current_experience
        timings = getattr(self.policy, "timings", [])
        timing = timings[t] if t < len(timings) else {}
        res = {"buffer_bytes": int(self.policy.stored_bytes()), "condense_s": timing.get("condense_s"),
               "regenerate_s": timing.get("regenerate_s")}
        # cached: condensed by an earlier run (condense_s is that run's time; this one spent none)
        self.history.append({"experience": t, **res, "cached": timing.get("cached")})
        x = strategy.clock.train_iterations
        names = {"buffer_bytes": "BufferBytes", "condense_s": "CondenseTime_Exp", "regenerate_s": "RegenerateTime_Exp"}
        return [MetricValue(self, f"{names[k]}/train_phase/train_stream", v, x)
                for k, v in res.items() if v is not None]

    def __str__(self):
        return "ReplayCost"
