"""CIFAR loader on a tiny torchvision-format folder: layout, normalization, augmentation, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from fixtures.cifar import write_cifar

from ticketbench.models.data import CIFAR_STATS, DataError, dataset_names, load_dataset


def test_registered():
    assert {"cifar10", "cifar100", "digits", "synthetic"} <= set(dataset_names())


def test_cifar10_reads_all_batches_and_normalizes(tmp_path):
    write_cifar(tmp_path, "cifar10", n_per_file=6, n_test=5)
    data = load_dataset("cifar10", tmp_path, augment=False)
    assert (len(data.train), len(data.test), data.num_classes, data.input_shape) == (30, 5, 10, (3, 32, 32))
    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("rb") as f:
        raw = pickle.load(f, encoding="bytes")
    mean, std = CIFAR_STATS["cifar10"]
    x, y = data.train[0]
    # Pixel (c=1, h=0, w=2) of image 0 sits at flat index 1*1024 + 0*32 + 2 in the row-major 3072 vector.
    expect = (raw[b"data"][0, 1024 + 2] / 255.0 - mean[1]) / std[1]
    assert x.shape == (3, 32, 32) and int(y) == raw[b"labels"][0]
    assert float(x[1, 0, 2]) == pytest.approx(expect, abs=1e-5)
    xb, yb = next(iter(data.loader("test", 4)))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.long


def test_folder_itself_and_cifar100(tmp_path):
    write_cifar(tmp_path, "cifar10", n_per_file=2, n_test=2)
    assert len(load_dataset("cifar10", tmp_path / "cifar-10-batches-py").train) == 10
    write_cifar(tmp_path, "cifar100", n_per_file=12, n_test=3)
    d = load_dataset("cifar100", tmp_path)
    assert (len(d.train), len(d.test), d.num_classes) == (12, 3, 100)


def test_subset_is_seeded_and_sized(tmp_path):
    write_cifar(tmp_path, "cifar10", n_per_file=10, n_test=10)
    a = load_dataset("cifar10", tmp_path, subset=7, test_subset=3, augment=False)
    b = load_dataset("cifar10", tmp_path, subset=7, test_subset=3, augment=False)
    assert (len(a.train), len(a.test)) == (7, 3)
    assert torch.equal(a.train.images, b.train.images)


def test_augmentation_is_crop_and_flip_of_the_padded_image(tmp_path):
    write_cifar(tmp_path, "cifar10", n_per_file=2, n_test=2)
    plain = load_dataset("cifar10", tmp_path, augment=False).train
    aug = load_dataset("cifar10", tmp_path, augment=True).train
    ref = plain[0][0]
    pad_value = [(0 - m) / s for m, s in zip(*CIFAR_STATS["cifar10"])]
    torch.manual_seed(0)
    for _ in range(20):
        x = aug[0][0]
        # Every augmented view is a shifted (possibly flipped) copy: find it among the 81x2 candidates.
        padded = torch.stack([torch.full((40, 40), v) for v in pad_value])
        padded[:, 4:36, 4:36] = ref
        found = any(
            torch.allclose(cand, x, atol=1e-5)
            for dy in range(9)
            for dx in range(9)
            for cand in (padded[:, dy : dy + 32, dx : dx + 32], padded[:, dy : dy + 32, dx : dx + 32].flip(-1))
        )
        assert found


def test_missing_and_malformed_folders_raise_dataerror(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("cifar10", None)
    with pytest.raises(DataError, match="no cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    write_cifar(tmp_path, "cifar10", n_per_file=2, n_test=2)
    base = tmp_path / "cifar-10-batches-py"
    (base / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: missing"):
        load_dataset("cifar10", tmp_path)
    (base / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a pickled CIFAR batch"):
        load_dataset("cifar10", tmp_path)
    with (base / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="uint8 \\(N, 3072\\)"):
        load_dataset("cifar10", tmp_path)
    with (base / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f)
    with pytest.raises(DataError, match="labels outside"):
        load_dataset("cifar10", tmp_path)


def test_digits_upsampled_keep_labels_and_content():
    small, big = load_dataset("digits"), load_dataset("digits", size=32)
    assert big.input_shape == (1, 32, 32) and big.train[0][0].shape == (1, 32, 32)
    xs, ys = small.test.tensors
    xb, yb = big.test.tensors
    assert torch.equal(ys, yb)
    # bilinear upsampling then average-pooling back by 4 reproduces the 8×8 images closely
    back = torch.nn.functional.avg_pool2d(xb, 4)
    assert torch.corrcoef(torch.stack([back.flatten(), xs.flatten()]))[0, 1] > 0.95


@pytest.mark.parametrize("size", [4, 7.5, "32", True, 1000])
def test_digits_size_is_validated(size):
    with pytest.raises(ValueError, match=r"digits data_options size must be a whole number in \[8, 256\]"):
        load_dataset("digits", size=size)
