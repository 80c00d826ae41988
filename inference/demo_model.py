"""The demo model: a small fastai CNN trained on scikit-learn's bundled handwritten digits.

The digits are real scans (8x8, 17 grey levels) that ship with scikit-learn, so the demo needs
no download. They are written out as PNG files, one folder per label, the layout fastai's
`ImageDataLoaders.from_folder` reads, and split into train, valid and a held-out test set that
the demo later submits as cases.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_LABELS = [str(d) for d in range(10)]
IMAGE_SIZE = 32


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (0..16, ink high) as a 32x32 RGB image: dark ink on light paper."""
    grey = (255 - pixels.reshape(8, 8) * (255 / 16)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE),
                                                  Image.Resampling.BILINEAR).convert("RGB")


def digits_write(root: Path, *, seed: int = 0) -> dict[str, list[Path]]:
    """Write the digits as PNG files under root/{train,valid,test}/<label>/ (60/20/20 split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = list(range(len(digits.target)))
    random.Random(seed).shuffle(order)
    cut1, cut2 = int(len(order) * 0.6), int(len(order) * 0.8)
    splits = {"train": order[:cut1], "valid": order[cut1:cut2], "test": order[cut2:]}
    written: dict[str, list[Path]] = {}
    for split, indices in splits.items():
        written[split] = []
        for i in indices:
            path = root / split / str(digits.target[i]) / f"digit-{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                digit_image(digits.data[i]).save(path)
            written[split].append(path)
    return written


@dataclass(frozen=True)
class TrainResult:
    path: Path
    valid_accuracy: float
    test_accuracy: float
    test_files: list[Path]


def demo_model_train(*, data_dir: Path, out: Path, epochs: int = 8, seed: int = 0,
                     channels: tuple[int, ...] = (16, 32, 64)) -> TrainResult:
    """Train the demo learner, export it to `out` and measure its held-out test accuracy.

    The data split is fixed (seed 0) so that every model is measured on the same held-out
    digits; `seed` varies the training run and `channels` the network's width.
    """
    files = digits_write(data_dir)
    return folder_learner_train(data_dir=data_dir, out=out, test_files=files["test"],
                                image_size=IMAGE_SIZE, epochs=epochs, seed=seed,
                                channels=channels)


def folder_learner_train(*, data_dir: Path, out: Path, test_files: list[Path], image_size: int,
                         epochs: int, seed: int = 0, channels: Sequence[int] = (16, 32, 64),
                         lr: float = 1e-2) -> TrainResult:
    """Train a small CNN from scratch on the images under data_dir/{train,valid}/<label>/,
    export it to `out` and measure its accuracy on `test_files` (each in its label's folder).

    No pretrained weights, so nothing is downloaded: one stride-2 convolution per entry of
    `channels` (each halves the image's side), average pooling and a linear classifier, whose
    input is the feature vector the out-of-domain detector compares.
    """
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from fastai.layers import ConvLayer, Flatten
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from fastai.vision.augment import Resize
    from fastai.vision.data import ImageDataLoaders
    from torch import nn

    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(data_dir, train="train", valid="valid",
                                       item_tfms=Resize(image_size), bs=64, num_workers=0,
                                       seed=seed)
    widths = [3, *channels]
    model = nn.Sequential(
        *(ConvLayer(c_in, c_out, stride=2) for c_in, c_out in pairwise(widths)),
        nn.AdaptiveAvgPool2d(1),
        Flatten(),
        nn.Linear(widths[-1], len(dls.vocab)),
    )
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr)
        valid_accuracy = float(learn.validate()[1])
        test_dl = dls.test_dl(test_files, with_labels=True, num_workers=0)
        test_accuracy = float(learn.validate(dl=test_dl)[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    learn.export(out.resolve())
    return TrainResult(path=out, valid_accuracy=valid_accuracy, test_accuracy=test_accuracy,
                       test_files=test_files)


def night_time(image: Image.Image, *, rng: random.Random) -> Image.Image:
    """A night-time capture: much darker, flatter and noisy."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 12, pixels.shape)
    dark = pixels * rng.uniform(0.18, 0.3) + noise + 8
    return Image.fromarray(dark.clip(0, 255).astype(np.uint8))


def low_resolution(image: Image.Image, *, side: int = 14) -> Image.Image:
    """A subject far away, or a cheap camera: far fewer pixels."""
    return image.resize((side, side), Image.Resampling.BILINEAR)
