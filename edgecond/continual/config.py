"""`edgecond continual`'s settings as one typed, frozen tree, in the same machinery as `condense`'s
(edgecond/config.py): resolved in layers -- the dataclass defaults < `--config FILE` < the
options given < `--set KEY=VALUE` -- checked before any work, written to `OUT/config.json`, and
re-run with `--config OUT/config.json`.

A run is `ContinualRun`: the dataset, the strategies (names from `edgecond strategies`), the seed
count, and the `ContinualConfig` every strategy shares (harness.py). `--set` reaches every field
of both (`epochs=5`, `strategies=naive,hmn`) and every condensation setting of the condensing
strategies (`match.outer=2`, `precision` excepted: each strategy fixes its own), which land in
`ContinualConfig.condense_settings`. An unknown key is one line naming the keys there are.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import (LEAVES, LOGGERS, NORMALISATIONS, PRESETS, ConfigError, ContinualConfig, ContinualRun, canonical_key,
                      coerce_to)
from .strategies import REGISTRY

RUN_KEYS = {k: t for k, t in typing.get_type_hints(ContinualRun).items() if k != "continual"}
CONFIG_KEYS = {k: t for k, t in typing.get_type_hints(ContinualConfig).items() if k not in ("condense_settings", "log_dir")}
# numeric ranges: key -> (low, high, low excluded)
BOUNDS = {"seeds": (1, 1000, False), "experiences": (1, 100_000, False), "ipc": (0, 1e6, True),
          "epochs": (1, 10 ** 6, False), "batch_size": (1, 10 ** 6, False), "lr": (0, 1e3, True),
          "width": (1, 4096, False), "lwf_alpha": (0, 1e3, False), "lwf_temperature": (0, 1e3, True),
          "device_budget": (1, 10 ** 6, False)}


def _coerce(key: str, t: Any, value: Any) -> Any:
    return coerce_to(t, value, key)  # the condense tree's coercion, by type


def split_keys(values: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Dotted keys -> (run fields, ContinualConfig fields, condensation settings), each coerced;
    an unknown key is a ConfigError naming the keys there are."""
    run, cont, condense = {}, {}, {}
    for key, v in values.items():
        k = key.strip().replace("-", "_")
        if k in RUN_KEYS:
            run[k] = _coerce(k, RUN_KEYS[k], v)
        elif k in CONFIG_KEYS:
            cont[k] = _coerce(k, CONFIG_KEYS[k], v)
        elif k.startswith("continual."):
            inner = k.split(".", 1)[1]
            if inner == "condense_settings":
                condense.update(dict(v))
                continue
            if inner not in CONFIG_KEYS and inner != "log_dir":
                raise ConfigError(f"unknown continual setting {inner!r}; settings are: {', '.join(CONFIG_KEYS)}")
            if inner != "log_dir":  # where logs go follows --out, never a file
                cont[inner] = _coerce(inner, CONFIG_KEYS[inner], v)
        else:
            try:
                ck = canonical_key(k)
            except ConfigError:
                raise ConfigError(f"unknown setting {key!r}: not a continual setting ({', '.join([*RUN_KEYS, *CONFIG_KEYS])}) "
                                  "nor a condensation one (`edgecond config` lists those)") from None
            if ck in ("precision", "kind", "ipc"):
                raise ConfigError(f"{ck} is not a continual setting: each strategy fixes the container's "
                                  f"(`edgecond strategies`), and the budget is --budget-ipc / ipc")
            condense[ck] = coerce_to(LEAVES[ck], v, ck)
    return run, cont, condense


def read_run_file(path) -> dict[str, Any]:
    """A run's config.json -> keys for resolve(); refused in one line if it is not one."""
    try:
        tree = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read continual config {path} as JSON: {e}") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("continual", {}), dict):
        raise ConfigError(f"{path} is not an `edgecond continual` config (one JSON object with a 'continual' part)")
    out = {k: v for k, v in tree.items() if k != "continual"}
    for k, v in tree.get("continual", {}).items():
        out[f"continual.{k}"] = v
    return out


def resolve(*layers: dict[str, Any]) -> ContinualRun:
    """The run the layers describe (later layers win), checked: ranges, names, choices."""
    run, cont, condense = {}, {}, {}
    for layer in layers:
        r, c, s = split_keys(layer)
        run.update(r), cont.update(c), condense.update(s)
    base = ContinualRun()
    cfg = replace(base.continual, **cont, condense_settings={**base.continual.condense_settings, **condense})
    result = replace(base, **run, continual=cfg)
    check(result)
    return result


def check(run: ContinualRun) -> None:
    cfg = run.continual
    values = {"seeds": run.seeds, **{k: getattr(cfg, k) for k in CONFIG_KEYS}}
    for key, (low, high, open_low) in BOUNDS.items():
        for v in values[key] if isinstance(values[key], tuple) else (values[key],):
            if not math.isfinite(v) or v < low or (open_low and v == low) or v > high:
                raise ConfigError(f"{key}={v!r} is out of range: it must be {'>' if open_low else '>='} {low:g} "
                                  f"and <= {high:g}")
    if not run.strategies:
        raise ConfigError("strategies is empty: name at least one (`edgecond strategies` lists them)")
    bad = [s for s in run.strategies if s not in REGISTRY]
    if bad:
        raise ConfigError(f"unknown strategy {bad[0]!r}; choose from {', '.join(REGISTRY)}")
    for key, value, choices in (("preset", cfg.preset, PRESETS), ("normalise", cfg.normalise, NORMALISATIONS)):
        if value not in choices:
            raise ConfigError(f"{key}={value!r}: choose one of {', '.join(choices)}")
    bad = [n for n in cfg.loggers if n not in LOGGERS]
    if bad:
        raise ConfigError(f"unknown logger {bad[0]!r}; choose from {', '.join(LOGGERS)}")
