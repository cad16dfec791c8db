"""The `edgecond` command line. Thin: it parses, calls the library, prints.

Logs and progress go to stderr; `--json` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from edgecond_device.errors import OneLineGroup
from edgecond_device.names import listed
from edgecond_device.units import PRECISIONS

from . import __version__
from .config import EVAL_PRESETS, LOGGERS, NORMALISATIONS, PRESETS, ContinualConfig, ContinualRun
from .resources import DEVICES


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
    click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: torch's choice)."),
]


def _device(ctx, param, value):
    from .resources import resolve_device

    try:
        return resolve_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


device_option = click.option("--device", type=click.Choice(DEVICES), default="auto",
                             show_default=True, callback=_device,
                             help="Where torch computes: auto is CUDA when torch sees a GPU, else the CPU.")


def with_data_options(f):
    for opt in reversed(data_options):
        f = opt(f)
    return f


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def _settings(config_file, assignments) -> tuple[dict, dict]:
    """(--config FILE's dotted keys, --set's dotted keys), checked against the config tree."""
    from .config import ConfigError, parse_assignments, read_config_file

    try:
        return (read_config_file(config_file) if config_file else {}), parse_assignments(list(assignments))
    except ConfigError as e:
        raise click.UsageError(str(e))


def _resolve(dataset, classes, ipc, budget, kind, precision, preset, seed, config_file, assignments, data_root,
             download):
    """Load the data and resolve the run's settings: defaults < preset < --config < options < --set."""
    from .budget import parse_bytes
    from .condense import settings_for
    from .config import ConfigError, check_range
    from .quantise import BYTE_BUDGET_PRECISION

    if ipc is not None and budget is not None:
        raise click.UsageError("give the budget once: --ipc N or --budget BYTES")
    try:
        budget = parse_bytes(budget) if budget is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--budget")
    from_file, sets = _settings(config_file, assignments)
    given = {**from_file, **{k: v for k, v in (("dataset", dataset), ("ipc", ipc), ("kind", kind),
                                               ("precision", precision), ("preset", preset), ("seed", seed))
                             if v is not None}}
    if classes is not None:
        from .data import parse_classes

        given["classes"] = tuple(parse_classes(classes))
    given.update(sets)
    if "ipc" not in given and budget is None:
        raise click.UsageError("give the budget: --ipc N or --budget BYTES (or a --config file that has ipc)")
    dataset, kind = given.pop("dataset", "digits"), given.pop("kind", "hmn")
    ipc, preset, seed = given.pop("ipc", None), given.pop("preset", "quick"), given.get("seed", 0)
    try:  # the two settings used before the tree is resolved: loading the data, sizing the budget
        check_range("seed", seed)
        if ipc is not None:
            check_range("ipc", ipc)
    except ConfigError as e:
        _fail(e)
    data = _load_data(dataset, list(given["classes"]) if given.get("classes") else None, seed, data_root, download)
    if budget is not None:  # the same bytes as float32 images per class: the config's one budget unit
        from .budget import bytes_ipc

        ipc = bytes_ipc(budget, data.image_shape, data.num_classes)
        given.setdefault("precision", BYTE_BUDGET_PRECISION)
    given["dataset"] = dataset
    try:
        cfg = settings_for(data, kind, ipc, preset=preset, settings=given)
    except (ConfigError, ValueError) as e:
        _fail(e)
    return data, cfg


def run_options(f):
    """The options that say what to condense (shared by `condense` and `config`)."""
    opts = [
        click.option("--dataset", default=None, help="digits (default, embedded), npz:PATH, imagefolder:PATH, mnist, "
                                                     "fashion-mnist, cifar10, cifar100, svhn."),
        click.option("--classes", default=None, help="Comma-separated class indices to keep, e.g. 0,1."),
        click.option("--ipc", type=float, default=None,
                     help="Storage budget in images per class as the papers count it: the bytes of ipc x "
                          "classes x C x H x W float32 values (CIFAR-10 1 IPC = 122,880 bytes)."),
        click.option("--budget", default=None, metavar="BYTES",
                     help="The storage budget in bytes instead: 122880, 120KB, 120KiB, 1.2MB; stored at "
                          "int8 unless --precision says otherwise."),
        click.option("--container", "kind", type=_KindChoice(), default=None,
                     help="Container kind (default hmn); `edgecond kinds` says what each is and can do."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="How the container is stored, and trained: fp16 holds 2x the values of fp32 in the "
                          "same bytes, int8 about 4x (per-channel scales counted; images as uint8 pixels), the "
                          "best at equal bytes measured (docs/results.md). Default: fp32 with --ipc (the "
                          "papers' containers), int8 with --budget. Matching generates from the values as "
                          "stored, so the export is exact."),
        click.option("--preset", type=click.Choice(PRESETS), default=None,
                     help="quick (default): sized for minutes on a CPU; paper: the papers' schedules (GPU)."),
        click.option("--seed", type=int, default=None, help="Seed of the condensation and the val split (default 0)."),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A JSON config, e.g. a run's config.json: re-runs its settings."),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                     help="Override any setting, e.g. --set match.outer=5 --set prune.method=double-end "
                          "(`edgecond config` lists them)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _kinds():
    from .kinds import KINDS

    return KINDS


class _KindChoice(click.Choice):
    """click.Choice over the registry's kinds, read when first needed: importing the registry
    imports torch, which `edgecond --help` and the other commands' start-up should not pay for."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        return tuple(_kinds())

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns the (empty) eager tuple
        pass


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def kinds(as_json):
    """List the container kinds in the registry, what each is and what it can do."""
    caps = ("matched", "multisize", "reorderable", "prunable", "contrast")
    rows = {n: {"description": k.description, **{c: getattr(k, c) for c in caps}} for n, k in _kinds().items()}
    if as_json:
        click.echo(json.dumps(rows))
        return
    for n, r in rows.items():
        can = ", ".join(c for c in caps[1:] if r[c]) or "-"
        how = "condensed by gradient matching" if r["matched"] else "selected"
        click.echo(f"{n:<10} {r['description']}\n{'':<10} {how}; can: {can}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def strategies(as_json):
    """List the continual strategies `edgecond continual` compares: what each is, what its buffer
    stores and how its bytes are counted (all from one budget, --budget-ipc)."""
    from .continual.strategies import REGISTRY

    rows = {n: s.summary() for n, s in REGISTRY.items()}
    if as_json:
        click.echo(json.dumps(rows))
        return
    for n, r in rows.items():
        click.echo(f"{n:<13} {r['description']}\n{'':<13} stores: {r['stores']}; bytes: {r['bytes_rule']}")


SETTINGS_HELP = """
\b
Every other setting -- schedule, multisize, pruning, prefix order, HMN shape -- is
reachable with --set KEY=VALUE or --config FILE; `edgecond config` prints them all
resolved for your options, docs/architecture.md says what each section does. E.g.
  --set prune.method=double-end        over-budget HMN pruned back by AUM
  --set match.multisize=false          no MDC subset loss (on by default for hmn)
  --set prefix_order=none              keep the condensation's instance order
  --set match.outer=5 --set match.inner=4 --set container.decoder=64x32
  --set container.max_instances=280 --set match.instance_sampling=cycle
                                       more instances than a step matches, visited evenly
"""


@main.command(epilog=SETTINGS_HELP)
@run_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: container.safetensors, config.json, report.json, samples.png, checkpoint.pt.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as one JSON object on stdout.")
@device_option
@with_data_options
def condense(dataset, classes, ipc, budget, kind, precision, preset, seed, config_file, assignments, out, resume,
             as_json, device, data_root, download, threads):
    """Condense a dataset into a container within a byte budget (--ipc or --budget).

    \b
    Writes OUT/container.safetensors, OUT/config.json (the resolved settings: rerun them with
    --config), OUT/report.json and OUT/samples.png; matching kinds checkpoint to
    OUT/checkpoint.pt (Ctrl-C saves one; --resume continues). Example:
      edgecond condense --dataset digits --ipc 5 --container hmn --out runs/digits-hmn
      edgecond condense --dataset digits --ipc 5 --precision int8 --out runs/digits-hmn-int8
    """
    from . import distributed
    from .budget import BudgetError
    from .condense import check_resumable
    from .condense import condense as run
    from .config import ConfigError
    from .io import OutputError, check_writable
    from .matching import ConvergenceError

    distributed.init(device)
    log = _log if distributed.is_main() else (lambda msg: None)  # rank 0 speaks for the job
    _threads(threads)
    try:
        if distributed.is_main():  # rank 0 alone writes (and probes: its probe folder is removed again)
            check_writable(out)
    except OutputError as e:
        _fail(e)
    data, cfg = _resolve(dataset, classes, ipc, budget, kind, precision, preset, seed, config_file, assignments,
                         data_root, download)
    if distributed.world_size() > 1 and not _kinds()[cfg.kind].matched:
        _fail(ValueError(f"{cfg.kind} needs no torchrun: run it as one process"))
    if resume:
        try:
            check_resumable(cfg, out, data)
        except ValueError as e:
            _fail(e)
    log(f"{data.name}: {data.num_classes} classes, {len(data.x_train)} train / {len(data.x_val)} val / "
        f"{len(data.x_test)} test images of shape {data.image_shape}")
    try:
        res = run(data, config=cfg, device=device, out=out, resume=resume)
    except (BudgetError, ConfigError, ConvergenceError, OutputError, ValueError) as e:
        _fail(e)
    except KeyboardInterrupt as e:
        log(str(e) or "interrupted")
        sys.exit(130)
    r = res.report
    if distributed.world_size() > 1:
        log(f"condensed across {distributed.world_size()} ranks ({cfg.match.update_mode} updates)")
    log(f"wrote {Path(out) / 'container.safetensors'}: {r['instances_per_class']} images per class, "
        f"{r['stored_bytes']:,} of {r['budget_bytes']:,} budget bytes ({r['stored_floats']:,} values at "
        f"{r['precision']}), {r['condense_seconds']:.1f} s")
    log(f"samples: {Path(out) / 'samples.png'}")
    if as_json and distributed.is_main():
        click.echo(json.dumps({"out": str(out), **r}))


@main.command("config", epilog=SETTINGS_HELP)
@run_options
@with_data_options
def config_cmd(dataset, classes, ipc, budget, kind, precision, preset, seed, config_file, assignments, data_root,
               download, threads):
    """Print the resolved settings `condense` would use, as JSON (save it, edit it, pass it to --config)."""
    if ipc is None and budget is None and config_file is None:
        ipc = 1.0 if (kind or "hmn") != "hmn" else 5.0
        _log(f"(no --ipc given: showing {ipc:g} IPC)")
    _, cfg = _resolve(dataset, classes, ipc, budget, kind, precision, preset, seed, config_file, assignments,
                      data_root, download)
    click.echo(json.dumps(cfg.to_dict(), indent=2))


@main.command()
@click.argument("container", required=False, type=click.Path(exists=True))
@click.option("--dataset", default=None, help="Dataset to test on (default: the one the container was made from).")
@click.option("--classes", default=None, help="Class indices (default: the container's).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Evaluation networks trained (seeds 0..N-1).")
@click.option("--preset", type=click.Choice(tuple(EVAL_PRESETS)), default=None,
              help="quick: 1000 SGD steps (CPU); paper: HMN paper App. C.2 (2000 epochs). Default: the run's "
                   "config.json `eval` section, else quick.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Override the number of training steps.")
@click.option("--full", is_flag=True, help="Train on the whole train split instead (the upper bound).")
@click.option("--per-class", type=int, default=None, help="Use only the first K instances per class.")
@click.option("--subsets", default=None,
              help="Evaluate each prefix size, e.g. 1,2,5 ('all': every size up to N, log-spaced when N is large); "
                   "adds `subsets` to the output and writes subsets.png beside the container.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@device_option
@with_data_options
def evaluate(container, dataset, classes, seeds, preset, steps, full, per_class, subsets, as_json, device,
             data_root, download, threads):
    """Train fresh ConvNets on CONTAINER's images (or the full data) and report test accuracy."""
    from .evaluation import evaluate_images
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
        _fail(ValueError(f"the container's classes ({listed(meta['classes'])}) differ from {dataset}'s "
                         f"({listed(data.classes)})"))
    if not len(data.x_test):
        _fail(ValueError(f"{dataset} has no test images: there is nothing to measure accuracy on"))
    cfg = _eval_settings(container, preset, steps)
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


def _eval_settings(container, preset, steps):
    """The evaluation protocol: --preset's, else the run directory's own (config.json), else quick."""
    from dataclasses import replace

    from .config import ConfigError, EvalConfig, eval_config, read_config_file

    run_config = Path(container) / "config.json" if container and Path(container).is_dir() else None
    if preset is None and run_config is not None and run_config.is_file():
        try:
            saved = {k[5:]: v for k, v in read_config_file(run_config).items() if k.startswith("eval.")}
        except ConfigError as e:
            _fail(e)
        return replace(EvalConfig(**saved), **({"steps": steps} if steps is not None else {}))
    return eval_config(preset or "quick", steps=steps)


@main.command()
@click.argument("container", type=click.Path(exists=True))
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), required=True, help="Where to write the ONNX model.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="How weights and memories are stored: fp32; fp16 (half the bytes, behind a Cast); int8 "
                   "(a quarter: per-channel scales behind DequantizeLinear, weight-only; images as uint8 "
                   "pixels). Default: the precision the container was condensed at (`condense --precision`), "
                   "which exports exactly; another one rounds after the fact.")
@click.option("--opset", type=int, default=None, help="ONNX opset to export at (default: the exporter's, >= 18).")
@click.option("--ort", "ort_format", is_flag=True,
              help="Also write the ORT-format model (ONNX.ort) for onnxruntime's minimal/mobile builds and the "
                   "operators a reduced build needs (ONNX.required_operators.config).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def export(container, onnx_path, precision, opset, ort_format, as_json):
    """Export CONTAINER to an ONNX model the device regenerates images from (onnxruntime only).

    \b
    The model maps (class_index, instance_index) int64 vectors to the normalised images
    `evaluate` trains on (output `images`) and to uint8 NHWC pixels (output `pixels`).
    Nothing is written unless onnxruntime matches torch on every instance, for every file
    (at the container's own precision or fp32: within 1e-5). Example:
      edgecond export runs/digits-hmn --onnx digits-hmn.onnx --precision fp16 --ort
      edgecond-device regenerate digits-hmn.ort --per-class 5 --out exemplars --format png
    """
    from .export import ExportError, export_container
    from .io import ContainerFileError, OutputError, check_writable

    try:
        check_writable(Path(onnx_path).resolve().parent)
        res = export_container(container, onnx_path, precision=precision, opset=opset, ort_format=ort_format)
    except (ContainerFileError, ExportError, OutputError, ValueError) as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(res))
        return
    for path, f in res["files"].items():
        click.echo(f"wrote {path}: {f['bytes']:,} bytes = {f['vs_budget']:.3f} x the budget's {res['budget_bytes']:,} "
                   f"bytes ({res['precision']}, opset {res['opset']}), max |onnxruntime - torch| = "
                   f"{f['max_abs_error']:.2g}")
    if "required_operators" in res:
        click.echo(f"wrote {res['required_operators']}: the operators a reduced onnxruntime build needs")


@main.command()
@click.option("--dataset", default=None, help=f"Dataset name (default: {ContinualRun.dataset}).")
@click.option("--experiences", type=int, default=None,
              help=f"Experiences the classes are split into (default: {ContinualConfig.experiences}).")
@click.option("--strategies", default=None,
              help=f"Comma-separated names from `edgecond strategies` (default: {','.join(ContinualRun.strategies)}).")
@click.option("--budget-ipc", type=float, default=None,
              help=f"Replay budget per class, the bytes of this many float32 images (default: {ContinualConfig.ipc:g}; "
                   "replay-bytes holds 4x as uint8 images; hmn-fp16 and hmn-int8 condense 2x and about 4x the "
                   "values into them).")
@click.option("--device-budget", default=None,
              help="Images per class the device replays at each experience, e.g. 50,20,10,5 (multisize prefixes).")
@click.option("--epochs", type=int, default=None,
              help=f"Training epochs per experience (default: {ContinualConfig.epochs}).")
@click.option("--normalise", type=click.Choice(NORMALISATIONS), default=None,
              help="The stream's normalisation: first-experience, its first experience's statistics (a device "
                   f"calibrating on its first data), or none ([0, 1] pixels) (default: {ContinualConfig.normalise}).")
@click.option("--seeds", type=int, default=None,
              help=f"Seeds (class order + init) 0..N-1 (default: {ContinualRun.seeds}).")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help=f"Condensation preset of the condensing strategies (default: {ContinualConfig.preset}).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: config.json, results.json/.md/.csv, accuracy.png, condensed models.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A run's config.json: run it again (options and --set given here change it).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Any setting: a run's (epochs=5, lr=0.02, strategies=naive,hmn) or a condensation one of the "
                   "condensing strategies (match.outer=2), as for `edgecond condense --set`.")
@click.option("--loggers", default=None,
              help=f"Avalanche loggers, comma-separated: {', '.join(LOGGERS)} (written under OUT/logs/).")
@click.option("--resume", is_flag=True,
              help="Keep what OUT already holds for these settings: finished strategies and seeds, and the "
                   "HMN condensations' checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@device_option
@with_data_options
def continual(dataset, experiences, strategies, budget_ipc, device_budget, epochs, normalise, seeds, preset, out,
              config_file, assignments, loggers, resume, as_json, device, data_root, download, threads):
    """Class-incremental learning on an Avalanche stream, every strategy at equal buffer bytes.

    \b
    Settings resolve like condense's: defaults < --config FILE < options < --set, are checked
    before any work, and are written to OUT/config.json; `--config OUT/config.json` runs the
    same again. HMN strategies condense each experience into an HMN, export it to ONNX and
    replay images regenerated by onnxruntime (the device runtime). Example (~10 min on 2 cores):
      edgecond continual --dataset digits --experiences 5 --budget-ipc 10 --out runs/cl
      edgecond continual --config runs/cl/config.json --set epochs=5 --out runs/cl-5
    """
    try:
        from .continual.config import read_run_file, resolve
        from .continual.runner import run_continual
    except ImportError as e:
        _fail(e)
    from dataclasses import replace

    from .config import ConfigError
    from .io import OutputError, atomic_write_text, check_writable

    _threads(threads)
    options = {k: v for k, v in (("dataset", dataset), ("experiences", experiences), ("strategies", strategies),
                                 ("ipc", budget_ipc), ("device_budget", device_budget), ("epochs", epochs),
                                 ("normalise", normalise), ("seeds", seeds), ("preset", preset), ("loggers", loggers))
               if v is not None}
    try:
        sets = {}
        for a in assignments:
            if "=" not in a:
                raise ConfigError(f"--set expects key=value, got {a!r}")
            key, value = a.split("=", 1)
            sets[key] = value
        run = resolve(read_run_file(config_file) if config_file else {}, options, sets)
        run = replace(run, continual=replace(run.continual, log_dir=str(Path(out) / "logs")))
        check_writable(out)
    except (ConfigError, OutputError) as e:
        _fail(e)
    data = _load_data(run.dataset, None, 0, data_root, download)
    cfg = run.continual
    try:
        if cfg.experiences > data.num_classes:
            raise ValueError(f"--experiences must be in 1..{data.num_classes} ({run.dataset} has {data.num_classes} "
                             f"classes), got {cfg.experiences}")
        _check_condensation(run, data)
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "config.json", json.dumps(run.to_dict(), indent=2))
        res = run_continual(data, list(run.strategies), cfg, seeds=run.seeds, out=Path(out), device=device,
                            log=_log, reuse=resume)
    except ValueError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo((Path(out) / "results.md").read_text())


def _check_condensation(run, data) -> None:
    """The condensing strategies' settings, resolved once before any work (a bad key is one line)."""
    from .continual.harness import strategy_settings

    for name in run.strategies:
        strategy_settings(name, data, run.continual)


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
    click.echo(f"  budget             {d['budget_bytes']:,} bytes (= {d['budget_ipc']:g} IPC as float32)")
    click.echo(f"  stored             {d['stored_bytes']:,} bytes at {d['precision']} ({100 * d['budget_use']:.1f}% of "
               f"the budget): {d['stored_values']:,} values; file {d['file_bytes']:,} bytes")
    click.echo(f"  parts              {'values':>10} {'bytes':>10}  stored as")
    for name, n in d["parts"].items():
        click.echo(f"    {name:<16} {n:>10,} {d['parts_bytes'][name]:>10,}  {d['parts_stored_as'].get(name, '')}")


if __name__ == "__main__":
    main()
