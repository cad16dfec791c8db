"""Where a condensation step's time goes, and how near this machine's peak it runs.

    python benchmarks/speed.py --threads 1                    # cifar10_mini at 1 and 10 IPC of bytes
    python benchmarks/speed.py --datasets digits --steps 20

For each budget it builds the container `edgecond condense --budget B` builds (the int8 HMN,
quick preset; the values do not change the cost, so the warm start is skipped) and runs class
steps of the matching loop exactly as `condense` does (`Matcher.class_step`: generate, one shared
augmentation, real-batch gradients, synthetic gradients with their graph, the matching loss's
backward pass through the container, the optimiser step) plus the matching network's own
training steps. It reports

* ms per class step and per network step, and the condensation time they add up to for the
  preset's schedule (outer x inner x (classes x class step + net_steps x network step));
* the share of each named phase (torch.profiler over `edgecond.*` regions, losses.phase);
* the step's FLOPs (torch.utils.flop_counter: forward, backward and double backward) over its
  time, as GFLOP/s and as a share of a 1024x1024 fp32 matmul measured in the same run at the
  same thread count -- the machine's practical peak;
* peak RSS. On whichever device torch sees (--device auto: CUDA if there is one), said in the row.
"""

from __future__ import annotations

import json
import time

import torch

from common import RESULTS, parse, parser, short, write
from edgecond.budget import bytes_ipc
from edgecond.condense import settings_for
from edgecond.data import load_dataset
from edgecond.kinds import get, sized_config, stored_as
from edgecond.matching import Matcher
from edgecond.resources import peak_rss_mb, resolve_device

BUDGETS = {"cifar10_mini": [122_880, 1_228_800], "digits": [12_800]}  # bytes: 1 and 10 IPC (digits 5) of fp32
PHASES = ("generate", "augment", "real gradients", "synthetic gradients", "matching backward", "optimiser",
          "network steps")


def gemm_peak(device: str, seconds: float = 2.0) -> float:
    """GFLOP/s of a 1024x1024 fp32 matmul on `device` at torch's current thread count."""
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9


def matcher_for(data, budget: int, device: str, settings: dict) -> Matcher:
    ipc = bytes_ipc(budget, data.image_shape, data.num_classes)
    cfg = settings_for(data, "hmn", ipc, settings={"precision": "int8", "match.warm_start": 0, **settings})
    kind = get("hmn")
    container = stored_as(kind.build(data, sized_config(kind, data, cfg), torch.Generator().manual_seed(0)), cfg, data)
    return Matcher(container, data, cfg, device=device)


def time_steps(m: Matcher, steps: int) -> tuple[float, float, float]:
    """(seconds per class step, seconds per network step, FLOPs per class step)."""
    from torch.utils.flop_counter import FlopCounterMode

    gen = m._generator(0)
    net, net_opt = m._network()
    k = m.data.num_classes
    for c in range(min(2, k)):  # warm-up: allocator, oneDNN primitives
        m.class_step(net, c, gen)
    t0 = time.perf_counter()
    for s in range(steps):
        m.class_step(net, s % k, gen)
    per_class = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    m._train_net(net, net_opt, gen)
    per_net = (time.perf_counter() - t0) / max(1, m.m.net_steps)
    with FlopCounterMode(display=False) as counter:
        m.class_step(net, 0, gen)
    return per_class, per_net, float(counter.get_total_flops())


def warm_step(m: Matcher, steps: int = 6) -> float:
    """Seconds per warm-start step (warmstart.py: batch 256, first-order) on a copy of the container."""
    import copy

    from edgecond.warmstart import warm_start

    cont = copy.deepcopy(m.container)
    warm_start(cont, m.data, 2, device=m.device, compute_dtype=m.m.compute_dtype)  # warm-up
    return warm_start(cont, m.data, steps, device=m.device, compute_dtype=m.m.compute_dtype)["seconds"] / steps


def gradient_agreement(data, budget: int, device: str, settings: dict, classes: int = 3) -> dict | None:
    """For settings that change the arithmetic (match.compute_dtype): the container's gradient of
    `classes` class steps against fp32's, from the same container, network and draws -- the
    smallest cosine and the largest difference as a share of fp32's norm."""
    if settings.get("match.compute_dtype", "fp32") == "fp32":
        return None
    grads = {}
    for dtype in ("fp32", settings["match.compute_dtype"]):
        m = matcher_for(data, budget, device, {**settings, "match.compute_dtype": dtype})
        torch.manual_seed(0)
        net, _ = m._network()
        grads[dtype] = []
        for c in range(classes):
            _, total = m._class_losses(net, c, torch.Generator().manual_seed(c))
            m.opt.zero_grad(set_to_none=True)
            total.backward()
            grads[dtype].append(torch.cat([p.grad.flatten() for p in m.container.parameters() if p.grad is not None]))
    a_list, b_list = grads.values()
    cos = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in zip(a_list, b_list)]
    rel = [float((a - b).norm() / a.norm()) for a, b in zip(a_list, b_list)]
    return {"min_cosine": min(cos), "max_relative_difference": max(rel), "class_steps": classes}


def phase_shares(m: Matcher, steps: int) -> dict[str, float]:
    """Share of a class step + its network steps spent in each named phase (torch.profiler)."""
    gen = m._generator(1)
    net, net_opt = m._network()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for s in range(steps):
            m.class_step(net, s % m.data.num_classes, gen)
        m._train_net(net, net_opt, gen)
    times = {e.key.removeprefix("edgecond."): e.cpu_time_total for e in prof.key_averages()
             if e.key.startswith("edgecond.")}
    total = sum(times.get(p, 0.0) for p in PHASES)
    return {p: times.get(p, 0.0) / total for p in PHASES}


def main() -> None:
    ap = parser(__doc__, threads=1)
    ap.add_argument("--steps", type=int, default=20, help="class steps timed per budget")
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees one), cpu or cuda")
    ap.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                    help="condensation settings to measure (e.g. match.syn_batch=64)")
    args = parse(ap)
    device = resolve_device(args.device)
    settings = dict(a.split("=", 1) for a in args.assignments)
    peak = gemm_peak(device)
    rows = []
    for dataset in args.datasets:
        data = load_dataset(dataset)
        for budget in BUDGETS[short(dataset)]:
            m = matcher_for(data, budget, device, settings)
            per_class, per_net, flops = time_steps(m, args.steps)
            shares = phase_shares(m, max(4, args.steps // 4))
            sched = m.m
            total = sched.outer * sched.inner * (data.num_classes * per_class + sched.net_steps * per_net)
            rows.append({"dataset": short(dataset), "budget_bytes": budget, "device": device,
                         "threads": torch.get_num_threads(), "settings": settings,
                         "instances_per_class": m.container.instances_per_class,
                         "syn_batch": sched.syn_batch, "real_batch": sched.real_batch,
                         "class_step_ms": 1000 * per_class, "network_step_ms": 1000 * per_net,
                         "warm_start_step_ms": 1000 * warm_step(m),
                         "class_step_gflop": flops / 1e9, "gflops": flops / per_class / 1e9,
                         "gemm_peak_gflops": peak, "share_of_peak": flops / per_class / 1e9 / peak,
                         "schedule": f"{sched.outer}x{sched.inner}", "condense_estimate_s": total,
                         "phases": shares, "peak_rss_mb": peak_rss_mb(),
                         "gradient_agreement": gradient_agreement(data, budget, device, settings)})
            r = rows[-1]
            print(f"{r['dataset']} {budget:,} B: {r['class_step_ms']:.0f} ms/class step, {r['gflops']:.1f} GFLOP/s "
                  f"= {100 * r['share_of_peak']:.0f}% of {peak:.0f}", flush=True)
    mine = {key(r): r for r in rows}
    old = json.loads((RESULTS / "speed.json").read_text())["rows"] if (RESULTS / "speed.json").is_file() else []
    merged = [r for r in old if key(r) not in mine] + rows  # other settings' rows stay beside these
    merged.sort(key=lambda r: (r["dataset"], r["budget_bytes"], json.dumps(r.get("settings", {}), sort_keys=True)))
    write("speed", {"rows": merged}, table({"rows": merged}))


def key(row: dict) -> tuple:
    return row["dataset"], row["budget_bytes"], row["device"], json.dumps(row.get("settings", {}), sort_keys=True)


def settings_label(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row.get("settings", {}).items())) or "defaults"


def table(payload: dict) -> str:
    """results/speed.md (benchmarks/tables.py renders it from the json)."""
    rows = payload["rows"]
    head = ("| dataset | budget (bytes) | settings | device, threads | images/class | class step (ms) | "
            "network step (ms) | warm-start step (ms) | GFLOP a step | GFLOP/s | share of fp32 GEMM peak | schedule | "
            "condensation estimate (s) | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    def line(r: dict) -> str:
        warm = f"{r['warm_start_step_ms']:.0f}" if "warm_start_step_ms" in r else ""  # rows before 2026-12-06
        return (f"| {r['dataset']} | {r['budget_bytes']:,} | {settings_label(r)} | {r['device']}, {r['threads']} | "
                f"{r['instances_per_class']} | {r['class_step_ms']:.0f} | {r['network_step_ms']:.0f} | {warm} | "
                f"{r['class_step_gflop']:.1f} | {r['gflops']:.1f} | {100 * r['share_of_peak']:.0f}% of "
                f"{r['gemm_peak_gflops']:.0f} | {r['schedule']} | {r['condense_estimate_s']:.0f} | "
                f"{r['peak_rss_mb']:.0f} |")
    out = head + "\n".join(line(r) for r in rows)
    out += "\n\nWhere a class step and its network steps spend their time (torch.profiler, named phases):\n\n"
    out += "| dataset | budget (bytes) | settings | " + " | ".join(PHASES) + " |\n|---|---|---|" + "---|" * len(PHASES) + "\n"
    out += "\n".join(f"| {r['dataset']} | {r['budget_bytes']:,} | {settings_label(r)} | " +
                      " | ".join(f"{100 * r['phases'][p]:.0f}%" for p in PHASES) + " |" for r in rows)
    agree = [r for r in rows if r.get("gradient_agreement")]
    if agree:
        out += ("\n\nThe container's matching gradient against fp32's (same container, network and draws, "
                "one class step per class shown):\n\n| dataset | budget (bytes) | settings | class steps | "
                "smallest cosine | largest difference / fp32 norm |\n|---|---|---|---|---|---|\n")
        out += "\n".join(f"| {r['dataset']} | {r['budget_bytes']:,} | {settings_label(r)} | "
                          f"{r['gradient_agreement']['class_steps']} | {r['gradient_agreement']['min_cosine']:.5f} | "
                          f"{100 * r['gradient_agreement']['max_relative_difference']:.1f}% |" for r in agree)
    return out


if __name__ == "__main__":
    main()
