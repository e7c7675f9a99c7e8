"""`--dataset imagefolder`: torchvision ImageFolder train/ and val/ with the ImageNet recipe, on generated PNGs;
an imported ticket's accuracy on such a folder through a suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import prune

from ticketbench.bench.cli import main
from ticketbench.models.data import IMAGENET_MEAN, IMAGENET_STD, DataError, load_dataset
from ticketbench.models.zoo import create_model

COLORS = {"cat": (200, 30, 30), "dog": (20, 40, 220)}  # one constant colour per class: its normalized value is known


def write_folder(root: Path, per_class: int = 3) -> Path:
    for split in ("train", "val"):
        for i, (name, rgb) in enumerate(COLORS.items()):
            d = root / split / name
            d.mkdir(parents=True)
            for j in range(per_class):
                size = (40 + 7 * j, 30 + 5 * i)  # odd sizes: Resize + CenterCrop must bring them to size × size
                Image.new("RGB", size, rgb).save(d / f"{j}.png")
    return root


def test_imagefolder_splits_classes_shapes_and_normalization(tmp_path):
    data = load_dataset("imagefolder", write_folder(tmp_path), size=32, resize=36)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 2
    assert len(data.train) == 6 and len(data.test) == 6
    for x, y in (data.test[k] for k in range(len(data.test))):
        assert x.shape == (3, 32, 32)
        rgb = COLORS[["cat", "dog"][y]]  # ImageFolder: labels are the sorted class folder names
        want = (torch.tensor(rgb) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        torch.testing.assert_close(x.mean((1, 2)), want, atol=1e-5, rtol=0)
        assert float(x.std((1, 2)).max()) < 1e-5  # a constant image stays constant after resize and crop
    assert data.train[0][0].shape == (3, 32, 32)  # RandomResizedCrop to the same size
    assert len(load_dataset("imagefolder", tmp_path, size=32, subset=4).train) == 4


@pytest.mark.parametrize(
    "mangle, needle",
    [
        (lambda r: __import__("shutil").rmtree(r / "val"), "no val/ under"),
        (lambda r: (r / "val" / "bird").mkdir(), "different classes"),
        (lambda r: [p.unlink() for p in (r / "train").rglob("*.png")], "imagefolder"),
    ],
)
def test_imagefolder_errors_say_what_to_fix(tmp_path, mangle, needle):
    root = write_folder(tmp_path)
    mangle(root)
    if needle == "different classes":
        Image.new("RGB", (8, 8)).save(root / "val" / "bird" / "0.png")
    with pytest.raises(DataError, match=needle):
        load_dataset("imagefolder", root, size=32)


@pytest.mark.e2e
def test_imported_ticket_accuracy_on_an_imagefolder(tmp_path):
    """A 2-class model that answers by colour, pruned with torch.nn.utils.prune, imported, run on the folder."""
    root = write_folder(tmp_path / "images")
    torch.manual_seed(0)
    src = create_model("small_cnn", num_classes=2, in_channels=3).eval()
    with torch.no_grad():  # logits = ± (mean red − mean blue): cat (red) → 0, dog (blue) → 1
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
        src.features[0].weight.zero_()
        src.features[0].weight[0, 0, 1, 1] = 1.0  # red → channel 0
        src.features[0].weight[1, 2, 1, 1] = 1.0  # blue → channel 1
        for i in (3, 7, 10):
            conv = src.features[i].weight
            conv.zero_()
            conv[0, 0, 1, 1] = conv[1, 1, 1, 1] = 1.0
        src.classifier.weight.zero_()
        src.classifier.bias.zero_()
        src.classifier.weight[0, 0] = src.classifier.weight[1, 1] = 1.0
        src.classifier.weight[0, 1] = src.classifier.weight[1, 0] = -1.0
    prune.l1_unstructured(src.classifier, "weight", amount=0.9)
    torch.save(src.state_dict(), tmp_path / "c.pt")
    tdir = tmp_path / "suite" / "ticket"
    args = ["import", "--model", "small_cnn", "--checkpoint", str(tmp_path / "c.pt"), "--input-shape", "3,32,32"]
    assert main([*args, "--out", str(tdir)]) == 0
    (tmp_path / "suite" / "s.toml").write_text(
        '[measure]\nbatch_sizes = [1]\nmin_iterations = 3\nmin_seconds = 0.01\n\n[[cases]]\nticket = "ticket"\n'
        'dataset = "imagefolder"\ndata_options = { size = 32, resize = 36 }\n'
    )
    out = tmp_path / "run"
    run = ["run", "--suite", str(tmp_path / "suite" / "s.toml"), "--data-root", str(root), "--out", str(out), "-q"]
    assert main([*run, "--device", "cpu"]) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["dataset"] == "imagefolder" and row["status"] == "ok"
    assert np.isclose(row["accuracy_top1"], 100.0) and np.isclose(row["accuracy_top1_torch"], 100.0)
