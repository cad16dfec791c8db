"""The `edgecond` command line. Thin: it parses, calls the library, prints.

Logs and progress go to stderr; `--json` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__

CONTAINER_KINDS = ["hmn", "pixel", "idc", "haba", "random", "herding"]


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e)) from e


def _load_data(dataset, classes, seed, data_root, download, val_fraction=0.1):
    from .data import DatasetError, load_dataset, parse_classes

    try:
        return load_dataset(dataset, classes=parse_classes(classes) if isinstance(classes, str) else classes,
                            seed=seed, data_root=data_root, download=download, val_fraction=val_fraction)
    except DatasetError as e:
        _fail(e)


data_options = [
    click.option("--data-root", type=click.Path(file_okay=False), default=None,
                 help="Where torchvision datasets live (default ~/.cache/edgecond/data)."),
    click.option("--download", is_flag=True, help="Download a torchvision dataset if missing (needs internet)."),
    click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)."),
]


def with_data_options(f):
    for opt in reversed(data_options):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecond")
def main():
    """edgecond: condense datasets into tiny generators for on-device continual learning.

    \b
    Typical flow:
      edgecond condense --dataset digits --ipc 5 --container hmn --out runs/digits-hmn
      edgecond evaluate runs/digits-hmn --seeds 3
      edgecond info runs/digits-hmn

    Datasets: digits (embedded), npz:PATH, imagefolder:PATH, mnist, fashion-mnist,
    cifar10, cifar100, svhn (with --data-root/--download).
    """


@main.command()
@click.option("--dataset", default="digits", show_default=True, help="Dataset name (see `edgecond --help`).")
@click.option("--ipc", type=float, required=True,
              help="Storage budget in images per class: ipc x classes x C x H x W float32 values.")
@click.option("--container", "kind", type=click.Choice(CONTAINER_KINDS), default="hmn", show_default=True,
              help="hmn: hierarchical memory network; pixel: IDC-I images; idc: multi-formation; haba: bases x "
                   "hallucinators; "
                   "random/herding: real-image coresets.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: container file, report.json, samples.png, checkpoints.")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True,
              help="quick: sized for minutes on a CPU; paper: the papers' schedules (GPU).")
@click.option("--classes", default=None, help="Comma-separated class indices to keep, e.g. 0,1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the selection/condensation and the val split.")
@click.option("--over-budget", type=float, default=0.1, show_default=True,
              help="hmn with --prune: condense with this much more budget for instance memories, then prune back.")
@click.option("--prune", type=click.Choice(["double-end", "easy", "random", "none"]), default="none",
              show_default=True,
              help="hmn: prune an over-budget HMN back to the budget by AUM (double-end: HMN Algorithm 1, "
                   "beta chosen on the validation split); none: condense within the budget.")
@click.option("--multisize/--no-multisize", default=None,
              help="MDC's adaptive subset loss so that every prefix of a class's images is a good set "
                   "(default: on for hmn, off for pixel/idc).")
@click.option("--subset-shared", is_flag=True, default=None,
              help="with --multisize on hmn: let the subset loss train the shared tiers (decoder, dataset and "
                   "class memories) too; by default it trains only the subset's instance memories.")
@click.option("--prefix-order", type=click.Choice(["herding", "none"]), default=None,
              help="After condensation, order each class's instances for prefixes S_[k]: herding keeps the "
                   "multisize-trained prefix first and adds the rest so each prefix's mean feature approaches "
                   "the real class mean (train split only); none keeps the condensation's order. Default: "
                   "herding with --multisize (cifar10_mini hmn 1 IPC: +1.4 average over sizes), else none.")
@click.option("--update-mode", type=click.Choice(["sequential", "summed"]), default=None,
              help="sequential: one optimiser step per class (the papers'; default); summed: one step per inner "
                   "iteration on the summed class losses -- the same on 1 process and under torchrun.")
@click.option("--outer", type=int, default=None, help="Override the preset's outer iterations.")
@click.option("--inner", type=int, default=None, help="Override the preset's inner iterations.")
@click.option("--checkpoint-every", type=int, default=None, help="Checkpoint every N outer iterations.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option("--instance-channels", type=int, default=None,
              help="hmn: channels of each instance memory (default: Table 7 / derived from the budget).")
@click.option("--distance", type=click.Choice(["mse", "l1"]), default=None,
              help="Gradient distance (default mse; the papers use l1 for MNIST-like and 100+ class data).")
@click.option("--warm-start", type=int, default=None,
              help="Steps fitting the container to real images before matching (default with the quick preset: "
                   "1000 for hmn, 4000 for an hmn decoder wider than the solver's tiers; else 0 -- the papers' "
                   "initialisation).")
@click.option("--max-instances", type=int, default=None,
              help="hmn: at most this many images per class; the rest of the budget widens the decoder "
                   "(--decoder-widths surplus) or each instance memory (default: the matching batch, 128, with "
                   "the quick preset; 0 = no cap, Table 7's shapes).")
@click.option("--decoder-widths", default=None, metavar="WxW|surplus|tiers",
              help="hmn: decoder widths before the image layer, e.g. 64x32 (paid for with instance memories). "
                   "'surplus' (quick's default): where --max-instances caps the instances, the widest decoder "
                   "that leaves room for the cap (cifar10_mini 10 IPC: 64x32), else the tiers'. 'tiers': the "
                   "budget solver's (Table 7's 10x6 on CIFAR; the paper preset's default).")
@click.option("--decoder-lr", type=float, default=None,
              help="hmn: the decoder's matching learning rate as a multiple of the memories' (0 keeps the "
                   "warm-started decoder fixed and matches the memories only). Default 1 (the paper's), 0 with "
                   "the quick preset for a decoder wider than the solver's tiers.")
@click.option("--haba-contrast", type=float, default=None,
              help="haba: weight of HaBa's adversarial contrastive term (paper 0.1; default off, see README).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@with_data_options
def condense(dataset, ipc, kind, out, preset, classes, seed, over_budget, prune, multisize, subset_shared, prefix_order,
             update_mode, outer, inner, checkpoint_every, resume, instance_channels, distance, warm_start, max_instances,
             decoder_widths, decoder_lr, haba_contrast, device, data_root, download, threads):
    """Condense DATASET into a container of KIND within an IPC budget.

    \b
    Writes OUT/container.safetensors, OUT/report.json and OUT/samples.png; gradient-matching
    kinds (hmn, pixel, idc) also checkpoint to OUT/checkpoint.pt (Ctrl-C saves one; --resume
    continues). Example:
      edgecond condense --dataset digits --ipc 5 --container hmn --out runs/digits-hmn
    """
    from . import distributed
    from .budget import BudgetError
    from .condense import condense as run
    from .matching import ConvergenceError

    distributed.init(device)
    if distributed.world_size() > 1:
        if kind in ("random", "herding"):
            _fail(ValueError(f"{kind} needs no torchrun: run it as one process"))
        update_mode = update_mode or "summed"
    log = _log if distributed.is_main() else (lambda msg: None)  # rank 0 speaks for the job

    _threads(threads)
    data = _load_data(dataset, classes, seed, data_root, download)
    log(f"{data.name}: {data.num_classes} classes, {len(data.x_train)} train / {len(data.x_val)} val / "
         f"{len(data.x_test)} test images of shape {data.image_shape}")
    multisize = (kind == "hmn") if multisize is None else multisize
    opts = {} if kind in ("random", "herding") else {
        "preset": preset, "resume": resume, "distance": distance, "over_budget": over_budget, "prune": prune,
        "multisize": multisize, "update_mode": update_mode, "subset_shared": subset_shared,
        "prefix_order": prefix_order or ("herding" if multisize else "none"),
        "outer": outer, "inner": inner, "checkpoint_every": checkpoint_every, "haba_contrast": haba_contrast,
        "warm_start": warm_start, "max_instances": max_instances,
        **({"instance_channels": instance_channels, "decoder_lr": decoder_lr, **_decoder_opts(decoder_widths)}
           if kind == "hmn" else {})}
    try:
        res = run(data, kind, ipc, seed=seed, device=device, out=out, **opts)
    except (BudgetError, ConvergenceError, ValueError) as e:
        _fail(e)
    except KeyboardInterrupt as e:
        log(str(e) or "interrupted")
        sys.exit(130)
    r = res.report
    if distributed.world_size() > 1:
        log(f"condensed across {distributed.world_size()} ranks ({r['match_config']['update_mode']} updates)")
    log(f"wrote {Path(out) / 'container.safetensors'}: {r['instances_per_class']} images per class, "
         f"{r['stored_floats']:,} of {r['budget_floats']:,} budget floats, {r['condense_seconds']:.1f} s")
    log(f"samples: {Path(out) / 'samples.png'}")


def _decoder_opts(spec: str | None) -> dict:
    """--decoder-widths -> MatchConfig overrides (none: the preset's rule)."""
    if spec is None:
        return {}
    if spec in ("tiers", "surplus"):
        return {"widen_decoder": spec == "surplus"}
    try:
        widths = tuple(int(w) for w in spec.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected widths like 64x32, 'surplus' or 'tiers', got {spec!r}",
                                 param_hint="--decoder-widths")
    if min(widths) < 1:
        raise click.BadParameter(f"widths must be positive, got {spec!r}", param_hint="--decoder-widths")
    return {"decoder_widths": widths, "widen_decoder": False}


@main.command()
@click.argument("container", required=False, type=click.Path(exists=True))
@click.option("--dataset", default=None, help="Dataset to test on (default: the one the container was made from).")
@click.option("--classes", default=None, help="Class indices (default: the container's).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Evaluation networks trained (seeds 0..N-1).")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True,
              help="quick: 1000 SGD steps (CPU); paper: HMN paper App. C.2 (2000 epochs).")
@click.option("--steps", type=int, default=None, help="Override the number of training steps.")
@click.option("--full", is_flag=True, help="Train on the whole train split instead (the upper bound).")
@click.option("--per-class", type=int, default=None, help="Use only the first K instances per class.")
@click.option("--subsets", default=None,
              help="Evaluate each prefix size, e.g. 1,2,5 ('all': every size up to N, log-spaced when N is large); "
                   "adds `subsets` to the output and writes subsets.png beside the container.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@with_data_options
def evaluate(container, dataset, classes, seeds, preset, steps, full, per_class, subsets, as_json, device,
             data_root, download, threads):
    """Train fresh ConvNets on CONTAINER's images (or the full data) and report test accuracy."""
    from .evaluation import eval_config, evaluate_images
    from .io import ContainerFileError, load_container

    _threads(threads)
    if not full and container is None:
        raise click.UsageError("give a CONTAINER (run directory or file), or --full")
    meta = {}
    if container is not None:
        try:
            cont, meta = load_container(container)
        except (ContainerFileError, ValueError) as e:
            _fail(e)
    dataset = dataset or meta.get("dataset") or "digits"
    if classes is None:
        classes = meta.get("dataset_classes")
    data = _load_data(dataset, classes, meta.get("data_seed", 0), data_root, download,
                      meta.get("val_fraction", 0.1))
    if meta and meta["classes"] != data.classes:
        _fail(ValueError(f"the container's classes {meta['classes']} differ from {dataset}'s {data.classes}"))
    cfg = eval_config(preset, steps=steps)
    if full:
        x, y, what = data.x_train, data.y_train, "full train split"
    else:
        try:
            x, y = cont.images(per_class=per_class)
        except ValueError as e:
            _fail(e)
        what = f"{meta['kind']} container, {len(x) // data.num_classes} images per class"
    _log(f"evaluating {what} on {data.name}: {seeds} seed(s), {cfg.num_steps(len(x))} steps each")
    res = evaluate_images(x, y, data, cfg, seeds=seeds, device=device)
    res.update({"dataset": data.name, "source": "full" if full else meta.get("kind")})
    if subsets and not full:
        from .evaluation import evaluate_subsets, subset_sizes
        from .plots import line_plot

        try:
            sizes = subset_sizes(subsets, cont.instances_per_class)
        except ValueError as e:
            _fail(e)
        res["subsets"] = evaluate_subsets(cont, data, cfg, sizes, seeds=seeds, device=device)
        ks = [int(k) for k in res["subsets"]]
        plot = Path(container) if Path(container).is_dir() else Path(container).parent
        line_plot({meta["kind"]: (ks, [res["subsets"][str(k)]["mean"] for k in ks],
                                  [res["subsets"][str(k)]["std"] for k in ks])}, plot / "subsets.png",
                  xlabel="images per class (prefix size)", ylabel="test accuracy", logx=max(ks) > 20,
                  title=f"{meta['kind']} on {data.name}: accuracy of each prefix subset")
    if as_json:
        click.echo(json.dumps(res))
    else:
        for k, v in res.get("subsets", {}).items():
            click.echo(f"  first {k:>4} per class: {v['mean']:.4f} ± {v['std']:.4f}")
        click.echo(f"test accuracy {res['accuracy_mean']:.4f} ± {res['accuracy_std']:.4f} over {seeds} seed(s) "
                   f"(val {res['val_accuracy_mean']:.4f}); per seed: "
                   + ", ".join(f"{a:.4f}" for a in res["accuracies"]))


@main.command()
@click.argument("container", type=click.Path(exists=True))
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), required=True, help="Where to write the ONNX model.")
@click.option("--fp16", "precision", flag_value="fp16", help="Store weights and memories in half precision.")
@click.option("--int8", "precision", flag_value="int8",
              help="Store weights and memories as int8 with per-channel scales (weight-only DequantizeLinear).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def export(container, onnx_path, precision, as_json):
    """Export CONTAINER to an ONNX model the device regenerates images from (onnxruntime only).

    \b
    The model maps (class_index, instance_index) int64 vectors to the normalised images
    `evaluate` trains on. Nothing is written unless onnxruntime matches torch on every
    instance (fp32: within 1e-5). Example:
      edgecond export runs/digits-hmn --onnx digits-hmn.onnx
      edgecond-device regenerate digits-hmn.onnx --per-class 5 --out exemplars --format png
    """
    from .export import ExportError, export_container
    from .io import ContainerFileError

    try:
        res = export_container(container, onnx_path, precision=precision or "fp32")
    except (ContainerFileError, ExportError, ValueError) as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo(f"wrote {res['path']}: {res['bytes']:,} bytes ({res['precision']}; container budget "
                   f"{res['budget_bytes']:,} bytes fp32), max |onnxruntime - torch| = {res['max_abs_error']:.2g}")


@main.command()
@click.option("--dataset", default="digits", show_default=True)
@click.option("--experiences", type=int, default=5, show_default=True, help="Experiences the classes are split into.")
@click.option("--strategies", default="naive,replay,replay-bytes,herding,lwf,hmn,hmn-lwf,joint", show_default=True,
              help="Comma-separated: naive, replay, replay-bytes, herding, lwf, hmn, hmn-fp16, hmn-lwf, "
                   "hmn-shared (one HMN grown over the stream, decoder shared), joint.")
@click.option("--budget-ipc", type=float, default=10, show_default=True,
              help="Replay budget per class in float32 images (replay-bytes holds 4x as uint8; hmn-fp16 2x IPC).")
@click.option("--device-budget", default=None,
              help="Images per class the device replays at each experience, e.g. 50,20,10,5 (multisize prefixes).")
@click.option("--epochs", type=int, default=20, show_default=True, help="Training epochs per experience.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds (class order + init) 0..N-1.")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True,
              help="Condensation preset of the HMN strategies.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: results.json, results.md, results.csv, accuracy.png, condensed models.")
@click.option("--loggers", default="", show_default=True,
              help="Avalanche loggers, comma-separated: text, csv, tensorboard (written under OUT/logs/).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@with_data_options
def continual(dataset, experiences, strategies, budget_ipc, device_budget, epochs, seeds, preset, out, loggers,
              as_json, device, data_root, download, threads):
    """Class-incremental learning on an Avalanche stream, every strategy at equal buffer bytes.

    \b
    HMN strategies condense each experience into an HMN, export it to ONNX and replay
    images regenerated by onnxruntime (the device runtime). Example (~10 min on 2 cores):
      edgecond continual --dataset digits --experiences 5 --budget-ipc 10 --out runs/cl
    """
    from .continual.harness import LOGGERS, STRATEGIES, ContinualConfig
    from .continual.report import run_continual

    _threads(threads)
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if bad:
        _fail(ValueError(f"unknown strategy {bad[0]!r}; choose from {', '.join(STRATEGIES)}"))
    log_names = [s.strip() for s in loggers.split(",") if s.strip()]
    bad = [s for s in log_names if s not in LOGGERS]
    if bad:
        _fail(ValueError(f"unknown logger {bad[0]!r}; choose from {', '.join(LOGGERS)}"))
    data = _load_data(dataset, None, 0, data_root, download)
    try:
        schedule = [int(v) for v in device_budget.split(",")] if device_budget else []
        cfg = ContinualConfig(experiences=experiences, ipc=budget_ipc, epochs=epochs, preset=preset,
                              device_budget=schedule, loggers=log_names, log_dir=str(Path(out) / "logs"))
        res = run_continual(data, names, cfg, seeds=seeds, out=Path(out), device=device, log=_log)
    except ValueError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo((Path(out) / "results.md").read_text())


@main.command()
@click.argument("file", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(file, as_json):
    """Show what a container file (or run directory) holds: budget, parts, classes."""
    from .info import describe

    try:
        d = describe(file)
    except ValueError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(f"{d['path']}  ({d['kind']}, format v{d['format_version']}, edgecond {d['edgecond_version']})")
    click.echo(f"  dataset            {d.get('dataset')}  image shape {tuple(d['image_shape'])}")
    click.echo(f"  classes            {len(d['classes'])}: {', '.join(d['classes'])}")
    click.echo(f"  images per class   {d['instances_per_class']}")
    click.echo(f"  budget             {d['budget_ipc']:g} IPC = {d['budget_floats']:,} floats "
               f"= {d['budget_bytes']:,} bytes (fp32)")
    click.echo(f"  stored             {d['stored_floats']:,} floats ({d['stored_ipc']:.3f} IPC, "
               f"{100 * d['budget_use']:.1f}% of budget); file {d['file_bytes']:,} bytes")
    click.echo("  parts:")
    for name, n in d["parts"].items():
        click.echo(f"    {name:<24} {n:>10,}")


if __name__ == "__main__":
    main()
