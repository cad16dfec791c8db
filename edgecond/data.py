"""Datasets by name, split and normalised the same way everywhere.

A dataset name is one of:

* ``digits`` -- scikit-learn's 8x8 handwritten digits, shipped inside the wheel, so
  everything works offline on a fresh machine;
* ``npz:PATH`` -- arrays ``x_train, y_train, x_test, y_test`` (uint8, NHWC or NHW) and
  optionally ``classes``;
* ``imagefolder:PATH`` -- ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``;
* a torchvision name (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn``)
  read from ``data_root`` (``download=True`` fetches it).

Every loader returns raw uint8 NHWC arrays; :func:`load_dataset` then carves a seeded,
stratified validation split out of train (val is what we tune on -- the test split is only
ever reported), computes per-channel mean/std on the remaining train images alone, and
returns float tensors in the normalised space every model and container works in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from edgecond_device.names import listed, printable


MAX_CLASSES = 100_000  # labels beyond it are a damaged or hostile file, not a dataset


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says what to do about it."""


@dataclass
class RawSplits:
    """uint8 images (N, H, W, C) and int64 labels, as a loader found them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    flip: bool  # is a horizontal flip label-preserving for this data?


@dataclass
class Dataset:
    """A dataset ready for training: normalised float tensors (N, C, H, W)."""

    name: str
    classes: list[str]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: list[float]
    std: list[float]
    flip: bool
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def floats_per_ipc(self) -> int:
        """Storage of one image per class, in float32 values (docs/architecture.md, Budgets: 1 IPC)."""
        c, h, w = self.image_shape
        return c * h * w * self.num_classes

    def class_images(self, c: int, split: str = "train") -> torch.Tensor:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        return x[y == c]

    def subset(self, classes: list[int]) -> "Dataset":
        """These classes only, relabelled 0..k-1 in the given order; same normalisation."""
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        parts = {}
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            keep = remap[y] >= 0
            parts[f"x_{split}"], parts[f"y_{split}"] = x[keep], remap[y[keep]]
        return Dataset(name=self.name, classes=[self.classes[c] for c in classes], mean=self.mean, std=self.std,
                       flip=self.flip, meta={**self.meta, "classes_selected": list(classes)}, **parts)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to [0, 1] pixels (for plots)."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


# --------------------------------------------------------------------------- loaders

def _load_digits(_: str, **__) -> RawSplits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    # sklearn ships no test split: a fixed stratified 30% test split (seed 0), part of
    # the dataset's definition and not a tunable.
    test = _stratified_pick(y, 0.3, np.random.default_rng(0))
    train = np.setdiff1d(np.arange(len(y)), test)
    return RawSplits(x[train], y[train], x[test], y[test], [str(i) for i in range(10)], flip=False)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_npz(path: str, **__) -> RawSplits:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"npz file not found: {p}. Give the path of an .npz holding "
                           f"{', '.join(NPZ_KEYS)} (uint8 NHWC or NHW) and optionally 'classes'.")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise DatasetError(f"{p} is not a readable .npz file: {e}") from e
    with z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise DatasetError(f"{p}: missing key(s) {', '.join(missing)}; expected {', '.join(NPZ_KEYS)}")
        try:
            arrays = {k: z[k] for k in NPZ_KEYS}
            classes = z["classes"] if "classes" in z.files else None
        except Exception as e:  # noqa: BLE001 - object arrays (pickles) are refused, damaged members too
            raise DatasetError(f"{p}: an array cannot be read without running code from the file or is "
                               f"damaged ({printable(str(e), 120)}); save plain numeric arrays") from None
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "USi" or not 0 < len(classes) <= MAX_CLASSES:
            raise DatasetError(f"{p}: key 'classes' must be 1 to {MAX_CLASSES:,} names, got an array of "
                               f"{classes.dtype} with shape {classes.shape}")
        classes = [str(c) for c in classes.tolist()]
        if len(set(classes)) != len(classes):
            raise DatasetError(f"{p}: key 'classes' names a class twice")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = arrays[f"x_{split}"] = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DatasetError(f"{p}: key 'x_{split}' has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C in 1 or 3")
        if x.dtype != np.uint8:
            raise DatasetError(f"{p}: key 'x_{split}' has dtype {x.dtype}; expected uint8 pixels")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{p}: key 'y_{split}' has shape {y.shape}; expected ({len(x)},) labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{p}: key 'y_{split}' has dtype {y.dtype}; expected integer labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(f"{p}: x_train images {arrays['x_train'].shape[1:]} and x_test images "
                           f"{arrays['x_test'].shape[1:]} differ in shape")
    if not len(arrays["y_train"]):
        raise DatasetError(f"{p}: key 'x_train' holds no images")
    for split in ("train", "test"):  # checked before a name is made per label: 10**9 would not fit in memory
        y = arrays[f"y_{split}"]
        if len(y) and (y.min() < 0 or y.max() >= (len(classes) if classes is not None else MAX_CLASSES)):
            bound = f"{len(classes) - 1} (the {len(classes)} classes named in 'classes')" if classes is not None \
                else f"{MAX_CLASSES - 1:,} (at most {MAX_CLASSES:,} classes without a 'classes' key)"
            raise DatasetError(f"{p}: key 'y_{split}' has labels in [{y.min()}, {y.max()}], outside 0..{bound}")
    n_classes = len(classes) if classes is not None else int(arrays["y_train"].max()) + 1
    classes = classes or [str(i) for i in range(n_classes)]
    return RawSplits(arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"],
                     arrays["y_test"].astype(np.int64), classes, flip=True)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _read_folder(root: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys, shapes = [], [], {}
    for ci, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        for f in files:
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as e:  # truncated, not an image, ...
                raise DatasetError(f"{f} is not a readable image ({printable(str(e), 120)}); "
                                   "remove or replace it") from None
            shapes.setdefault(a.shape, f)
            xs.append(a if a.ndim == 3 else a[..., None])
            ys.append(ci)
    if len(shapes) > 1:
        seen = "; ".join(f"{s} e.g. {f}" for s, f in list(shapes.items())[:3])
        raise DatasetError(f"{root}: images of mixed sizes or modes ({seen}). Resize them to one "
                           "size first (e.g. with torchvision.transforms.Resize).")
    if not xs:
        raise DatasetError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return np.stack(xs).astype(np.uint8), np.asarray(ys, dtype=np.int64)


def _load_imagefolder(path: str, **__) -> RawSplits:
    root = Path(path)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"image folder {root} has no '{split}/' directory; expected "
                               f"{root}/train/<class>/*.png and {root}/test/<class>/*.png")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    test_classes = sorted(d.name for d in (root / "test").iterdir() if d.is_dir())
    if not classes:
        raise DatasetError(f"{root}/train has no class folders")
    if test_classes != classes:
        raise DatasetError(f"{root}: train classes {classes} and test classes {test_classes} differ")
    xtr, ytr = _read_folder(root / "train", classes)
    xte, yte = _read_folder(root / "test", classes)
    if xtr.shape[1:] != xte.shape[1:]:
        raise DatasetError(f"{root}: train images {xtr.shape[1:]} and test images {xte.shape[1:]} differ in shape")
    return RawSplits(xtr, ytr, xte, yte, classes, flip=True)


TORCHVISION = {
    # name: (torchvision class, flip-invariant)
    "mnist": ("MNIST", False),
    "fashion-mnist": ("FashionMNIST", False),
    "cifar10": ("CIFAR10", True),
    "cifar100": ("CIFAR100", True),
    "svhn": ("SVHN", False),
}


def _load_torchvision(name: str, data_root: str | None = None, download: bool = False) -> RawSplits:
    import torchvision

    cls_name, flip = TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = os.path.expanduser(data_root or "~/.cache/edgecond/data")

    def split(train: bool):
        kw = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        try:
            return cls(root=root, download=download, **kw)
        except RuntimeError as e:
            hint = ("run again with --download (needs internet)" if not download else
                    "the download failed; check the network, or place the files there by hand")
            raise DatasetError(f"{name} not found under {root}: {hint}. ({e})") from e

    out = []
    for train in (True, False):
        ds = split(train)
        x = np.asarray(ds.data)
        if name == "svhn":  # stored NCHW
            x = x.transpose(0, 2, 3, 1)
        if x.ndim == 3:
            x = x[..., None]
        y = np.asarray(ds.labels if name == "svhn" else ds.targets, dtype=np.int64)
        out += [x.astype(np.uint8), y]
    classes = list(getattr(ds, "classes", None) or [str(i) for i in range(int(out[1].max()) + 1)])
    return RawSplits(out[0], out[1], out[2], out[3], [str(c) for c in classes], flip=flip)


LOADERS: dict[str, Callable[..., RawSplits]] = {
    "digits": _load_digits,
    "npz": _load_npz,
    "imagefolder": _load_imagefolder,
    **{name: (lambda arg, _n=name, **kw: _load_torchvision(_n, **kw)) for name in TORCHVISION},
}


def available() -> list[str]:
    """Names accepted by :func:`load_dataset` (prefixes end with ':')."""
    return ["digits", "npz:PATH", "imagefolder:PATH", *TORCHVISION]


def load_raw(name: str, data_root: str | None = None, download: bool = False) -> RawSplits:
    kind, _, arg = name.partition(":")
    if kind not in LOADERS or (kind in ("npz", "imagefolder")) != bool(arg):
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(available())}")
    return LOADERS[kind](arg or kind, data_root=data_root, download=download)


# --------------------------------------------------------------------------- splitting

def _stratified_pick(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random `fraction` of `y` (at least one per class if possible)."""
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        picked.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def parse_classes(spec: str | None) -> list[int] | None:
    """'0,1,5' -> [0, 1, 5]; None or '' -> None (all classes)."""
    if not spec:
        return None
    try:
        out = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as e:
        raise DatasetError(f"--classes must be comma-separated class indices, got {spec!r}") from e
    if len(set(out)) != len(out):
        raise DatasetError(f"--classes lists a class twice: {spec!r}")
    return out


def load_dataset(
    name: str,
    *,
    classes: list[int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    data_root: str | None = None,
    download: bool = False,
) -> Dataset:
    """Load `name`, keep `classes` (relabelled 0..k-1), split off val, normalise from train."""
    raw = load_raw(name, data_root=data_root, download=download)
    x_tr, y_tr, x_te, y_te, names = raw.x_train, raw.y_train, raw.x_test, raw.y_test, raw.classes
    if classes is not None:
        bad = [c for c in classes if not 0 <= c < len(names)]
        if bad:
            raise DatasetError(f"class index {bad[0]} out of range: {name} has {len(names)} classes (0..{len(names) - 1})")
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[classes] = np.arange(len(classes))
        keep_tr, keep_te = remap[y_tr] >= 0, remap[y_te] >= 0
        x_tr, y_tr = x_tr[keep_tr], remap[y_tr[keep_tr]]
        x_te, y_te = x_te[keep_te], remap[y_te[keep_te]]
        names = [names[c] for c in classes]
    missing = sorted(set(range(len(names))) - set(np.unique(y_tr).tolist()))
    if missing:
        raise DatasetError(f"{name}: classes {listed(map(str, missing))} have no training images")

    val_idx = _stratified_pick(y_tr, val_fraction, np.random.default_rng(seed))
    train_idx = np.setdiff1d(np.arange(len(y_tr)), val_idx)

    def to_float(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0)

    x_train = to_float(x_tr[train_idx])
    mean = x_train.mean(dim=(0, 2, 3))
    std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-3)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    return Dataset(
        name=name,
        classes=names,
        x_train=norm(x_train),
        y_train=torch.from_numpy(y_tr[train_idx]),
        x_val=norm(to_float(x_tr[val_idx])),
        y_val=torch.from_numpy(y_tr[val_idx]),
        x_test=norm(to_float(x_te)),
        y_test=torch.from_numpy(y_te),
        mean=mean.tolist(),
        std=std.tolist(),
        flip=raw.flip,
        meta={"seed": seed, "val_fraction": val_fraction, "classes_selected": classes,
              "train_indices": train_idx, "val_indices": val_idx},
    )
