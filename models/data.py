"""Data sets behind one registry: embedded scikit-learn digits, synthetic data, and local folders.

Nothing is ever downloaded: digits ship with scikit-learn, synthetic data is generated, and real
data sets (CIFAR) are read from a folder the user gives with `--data-root`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ticketbench.registry import Registry


@dataclass
class DataBundle:
    """Train/test splits plus the shape facts models and exporters need."""

    name: str
    train: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int

    def loader(self, split: str, batch_size: int, shuffle: bool | None = None, seed: int = 0) -> DataLoader:
        ds = self.train if split == "train" else self.test
        shuffle = (split == "train") if shuffle is None else shuffle
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)


DATASETS: Registry[Callable[..., DataBundle]] = Registry("dataset")


class DataError(ValueError):
    """A data set cannot be read (bad path, wrong format); the message says what to fix."""


def load_dataset(name: str, data_root: str | Path | None = None, **kw) -> DataBundle:
    check_data_options(name, kw)  # a typo is an error here too, never a silently ignored keyword (`**_` below)
    return DATASETS.get(name)(data_root=data_root, **kw)


def dataset_names() -> list[str]:
    return DATASETS.names()


# -- data_options, typed per data set -------------------------------------------------------------
# A suite's `data_options = {...}` reaches the factories below as keywords, which accept and ignore any others
# (`**_`); each data set declares what it takes here, so a typo or an absurd value is one line when the suite
# loads (`check_data_options`), not a default silently used or a failure after training.
Check = tuple[Callable[[Any], bool], str]  # (valid?, what the value must be)
MAX_SIDE = 4096  # per input dimension (channels or pixels) a file may ask for
MAX_EXAMPLE_VALUES = 2**26  # values per example (256 MB of float32); measure and export feed no more
SYNTHETIC_MAX_VALUES = 2**28  # values of a whole synthetic data set (1 GiB of float32), train and test together


def _whole(lo: int, hi: int) -> Check:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    ), f"a whole number in [{lo}, {hi}]"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def input_shape_problem(shape: Any, dims: tuple[int, ...] = (1, 2, 3)) -> str | None:
    """Why `shape` (read from a file: a ticket's provenance, data_options) is no input shape, or None: it must be
    `dims`-many whole sizes in [1, MAX_SIDE] with at most MAX_EXAMPLE_VALUES values per example."""
    ok = isinstance(shape, list | tuple) and len(shape) in dims
    if not (ok and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_SIDE for d in shape)):
        count = "C, H, W:" if dims == (3,) else f"{min(dims)}-{max(dims)}"
        return f"must be {count} whole sizes in [1, {MAX_SIDE}], got {_short(shape)}"
    if math.prod(shape) > MAX_EXAMPLE_VALUES:
        return f"{list(shape)} is over {MAX_EXAMPLE_VALUES} values per example"
    return None


_SEED: Check = (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63, "a whole number ≥ 0")
_SUBSET = _whole(1, 10**9)
_FLAG: Check = (lambda v: isinstance(v, bool), "true or false")
DATA_OPTIONS: dict[str, dict[str, Check]] = {
    "digits": {"seed": _SEED, "size": _whole(8, 256)},
    "synthetic": {
        "input_shape": (lambda v: input_shape_problem(v, (3,)) is None, f"C, H, W: whole sizes in [1, {MAX_SIDE}]"),
        "num_classes": _whole(1, 100_000),
        "n_train": _whole(0, 10**7),  # 0: an empty training split (int8 calibration then says so)
        "n_test": _whole(1, 10**7),  # accuracy needs a test example
        "seed": _SEED,
    },
    "cifar10": {"subset": _SUBSET, "test_subset": _SUBSET, "augment": _FLAG, "seed": _SEED},
    "cifar100": {"subset": _SUBSET, "test_subset": _SUBSET, "augment": _FLAG, "seed": _SEED},
    "imagefolder": {
        "size": _whole(1, MAX_SIDE),
        "resize": _whole(1, MAX_SIDE),
        "subset": _SUBSET,
        "test_subset": _SUBSET,
        "augment": _FLAG,
        "seed": _SEED,
    },
}


def check_data_options(name: str, options: Any) -> None:
    """`options` as data set `name` takes them, else DataError naming the key and what it may be."""
    if not isinstance(options, dict):
        raise DataError(f"data_options must be a table, got {_short(options)}")
    known = DATA_OPTIONS.get(name, {})
    for key, value in options.items():
        if key not in known:
            valid = ", ".join(f"{k} ({what})" for k, (_, what) in known.items()) or "none"
            raise DataError(f"{name} has no data option {_short(key)} (valid: {valid})")
        ok, what = known[key]
        if not ok(value):
            why = input_shape_problem(value, (3,)) if key == "input_shape" else None
            raise DataError(f"{name} data_options {key} {why or f'must be {what}, got {_short(value)}'}")
    if name == "synthetic":  # generated in memory: the whole set must fit
        shape = options.get("input_shape", (3, 32, 32))
        n = options.get("n_train", 512) + options.get("n_test", 256)
        if n * math.prod(shape) > SYNTHETIC_MAX_VALUES:
            raise DataError(
                f"synthetic data of input_shape {list(shape)} × {n} examples (n_train + n_test) is over "
                f"{SYNTHETIC_MAX_VALUES} values; lower them"
            )


@DATASETS.register("digits")
def digits(data_root: str | Path | None = None, seed: int = 0, size: int = 8, **_) -> DataBundle:
    """scikit-learn's 1797 8x8 handwritten digits, split 80/20 stratified, standardized.

    `size` > 8 upsamples bilinearly (e.g. 32 for CIFAR-sized models): the embedded data stays real, and a
    model large enough that its latency is compute, not call overhead, can still be trained in seconds."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = (torch.from_numpy((a - mean) / std) for a in (xtr, xte))
    if size != 8:
        xtr, xte = (F.interpolate(a, size=(size, size), mode="bilinear", align_corners=False) for a in (xtr, xte))
    return DataBundle(
        "digits",
        TensorDataset(xtr.contiguous(), torch.from_numpy(ytr).long()),
        TensorDataset(xte.contiguous(), torch.from_numpy(yte).long()),
        (1, size, size),
        10,
    )


@DATASETS.register("synthetic")
def synthetic(
    data_root: str | Path | None = None,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    n_train: int = 512,
    n_test: int = 256,
    seed: int = 0,
    **_,
) -> DataBundle:
    """Learnable random data: each class is a fixed random template plus noise."""
    c, h, w = input_shape  # a suite file's data_options give it as a list
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, *input_shape, generator=g)

    def make(n: int) -> TensorDataset:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = templates[y] + 1.5 * torch.randn(n, *input_shape, generator=g)
        return TensorDataset(x, y)

    return DataBundle("synthetic", make(n_train), make(n_test), (c, h, w), num_classes)


# -- CIFAR from a local torchvision-format folder ----------------------------------------------------
# Per-channel mean/std of the training images (as in the network-slimming / Early-Bird code).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
# name → (folder, train files, test files, label key) in the layout torchvision's datasets.CIFAR* write.
CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


class CifarDataset(Dataset):
    """uint8 images (N, 3, 32, 32) served normalized; with `augment`, random 32 px crop of the 4 px
    zero-padded image and a horizontal flip with p = 0.5 (the standard CIFAR recipe).

    `__getitems__` augments a whole batch at once (DataLoader uses it), which keeps CPU epochs short.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: bool = False) -> None:
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if self.augment:
            n = len(x)
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
            dy, dx = torch.randint(0, 9, (n,)), torch.randint(0, 9, (n,))
            x = torch.stack([padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(n)])
            flip = torch.rand(n) < 0.5
            x[flip] = x[flip].flip(-1)
        return (x - self.mean) / self.std

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        xs = self._transform(self.images[idx])
        return list(zip(xs.unbind(0), self.labels[idx].unbind(0), strict=True))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]


def _read_cifar_file(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → (uint8 images (N, 3, 32, 32), int64 labels); DataError says what is wrong."""
    import pickle

    if not path.is_file():
        raise DataError(f"{path}: missing (expected the torchvision CIFAR layout; nothing is downloaded)")
    try:
        with path.open("rb") as f:
            blob = pickle.load(f, encoding="bytes")
    except Exception as exc:
        raise DataError(f"{path}: not a pickled CIFAR batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or b"data" not in blob or label_key not in blob:
        raise DataError(f"{path}: a CIFAR batch needs keys b'data' and {label_key!r}")
    data, labels = np.asarray(blob[b"data"]), np.asarray(blob[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: b'data' must be uint8 (N, 3072) with N labels, got {data.dtype} {data.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels outside [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32), labels


def _subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random subset of `n` examples (all when n is None or ≥ the split size), fixed by `seed`."""
    if n is None or n >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[idx], labels[idx]


def load_cifar(
    name: str,
    data_root: str | Path | None,
    subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = True,
    seed: int = 0,
    **_,
) -> DataBundle:
    """CIFAR-10/100 from `data_root` (the folder holding `cifar-10-batches-py` / `cifar-100-python`, or
    that folder itself). `subset` / `test_subset` keep that many random examples of each split."""
    folder, train_files, test_files, label_key = CIFAR_LAYOUT[name]
    num_classes = 10 if name == "cifar10" else 100
    if data_root is None:
        raise DataError(f"{name} is read from a local folder: pass --data-root DIR holding {folder}/")
    root = Path(data_root)
    base = root if (root / train_files[0]).exists() else root / folder
    if not base.is_dir():
        raise DataError(f"{name}: no {folder}/ under {root} (torchvision layout expected; nothing is downloaded)")

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_cifar_file(base / f, label_key, num_classes) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    (xtr, ytr), (xte, yte) = read(train_files), read(test_files)
    xtr, ytr = _subset(xtr, ytr, subset, seed)
    xte, yte = _subset(xte, yte, test_subset, seed + 1)
    mean, std = CIFAR_STATS[name]

    def make(x: np.ndarray, y: np.ndarray, aug: bool) -> CifarDataset:
        return CifarDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), mean, std, aug)

    return DataBundle(name, make(xtr, ytr, augment), make(xte, yte, False), (3, 32, 32), num_classes)


@DATASETS.register("cifar10")
def cifar10(data_root: str | Path | None = None, **kw) -> DataBundle:
    """CIFAR-10 (50k/10k, 10 classes) from a local torchvision folder."""
    return load_cifar("cifar10", data_root, **kw)


@DATASETS.register("cifar100")
def cifar100(data_root: str | Path | None = None, **kw) -> DataBundle:
    """CIFAR-100 (50k/10k, 100 fine classes) from a local torchvision folder."""
    return load_cifar("cifar100", data_root, **kw)


# -- ImageNet-style folders (torchvision ImageFolder) --------------------------------------------------
# torchvision's ImageNet recipe (references/classification/presets.py): normalization by the ImageNet means.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def dataset_len(ds: Dataset) -> int:
    """Examples in a map-style dataset: torch's Dataset declares no __len__, but every dataset here has one."""
    if not isinstance(ds, Sized):
        raise TypeError(f"{type(ds).__name__} has no length")
    return len(ds)


def _random_subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """`n` random examples of `ds` (all when n is None or ≥ its size), fixed by `seed`."""
    if n is None or n >= dataset_len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(dataset_len(ds))[:n])
    return torch.utils.data.Subset(ds, idx.tolist())


@DATASETS.register("imagefolder")
def imagefolder(
    data_root: str | Path | None = None,
    size: int = 224,
    resize: int = 256,
    subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = True,
    seed: int = 0,
    **_,
) -> DataBundle:
    """`data_root/train/<class>/*` and `data_root/val/<class>/*` (torchvision ImageFolder), transformed as
    torchvision's ImageNet recipe: train RandomResizedCrop(size) + flip, val Resize(resize) + CenterCrop(size);
    both normalized with the ImageNet mean/std. Classes are the sorted folder names and must match across splits."""
    from torchvision import datasets, transforms

    if data_root is None:
        raise DataError("imagefolder is read from a local folder: pass --data-root DIR holding train/ and val/")
    root = Path(data_root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagefolder: no {split}/ under {root} (expected {split}/<class>/<image> folders)")
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = (
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
        if augment
        else [transforms.Resize(resize), transforms.CenterCrop(size)]
    )
    val_tf = [transforms.Resize(resize), transforms.CenterCrop(size)]
    try:
        train = datasets.ImageFolder(str(root / "train"), transforms.Compose(train_tf + normalize))
        val = datasets.ImageFolder(str(root / "val"), transforms.Compose(val_tf + normalize))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder {root}: {exc}") from exc
    if train.classes != val.classes:
        raise DataError(
            f"imagefolder {root}: train/ and val/ hold different classes ({len(train.classes)} vs {len(val.classes)})"
        )
    return DataBundle(
        "imagefolder",
        _random_subset(train, subset, seed),
        _random_subset(val, test_subset, seed + 1),
        (3, size, size),
        len(train.classes),
    )
