"""Data sets behind one registry: embedded scikit-learn digits, synthetic data, and local folders.

Nothing is ever downloaded: digits ship with scikit-learn, synthetic data is generated, and real
data sets (CIFAR) are read from a folder the user gives with `--data-root`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from models.registry import Registry


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
    return DATASETS.get(name)(data_root=data_root, **kw)


def dataset_names() -> list[str]:
    return DATASETS.names()


@DATASETS.register("digits")
def digits(data_root: str | Path | None = None, seed: int = 0, **_) -> DataBundle:
    """scikit-learn's 1797 8x8 handwritten digits, split 80/20 stratified, standardized."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    return DataBundle(
        "digits",
        TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr).long()),
        TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte).long()),
        (1, 8, 8),
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
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, *input_shape, generator=g)

    def make(n: int) -> TensorDataset:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = templates[y] + 1.5 * torch.randn(n, *input_shape, generator=g)
        return TensorDataset(x, y)

    return DataBundle("synthetic", make(n_train), make(n_test), tuple(input_shape), num_classes)
