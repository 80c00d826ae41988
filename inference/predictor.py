"""Loading exported fastai learners and predicting with them, in batches.

A learner is loaded once per worker process and kept while its version's artifact is unchanged.
Nothing here touches the database: callers predict outside any transaction.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import operator
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.conf import settings
from PIL import Image

logger = logging.getLogger(__name__)

_learners: dict[int, tuple[str, Any]] = {}


def device_name() -> str:
    """`cuda` when the setting asks for it and a GPU is there; otherwise `cpu`."""
    if settings.INFERENCE_DEVICE != "cuda":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    logger.warning("INFERENCE_DEVICE=cuda but no GPU is available: predicting on the CPU")
    return "cpu"


def learner_load(file: IO[bytes] | str) -> Any:
    """Load an exported learner (a pickle: only for artifacts an administrator registered)."""
    from fastai.learner import load_learner

    device = device_name()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*insecure pickle.*")
        learn = load_learner(file, cpu=device == "cpu")
    if device == "cuda":
        learn.dls.to("cuda")
        learn.model.to("cuda")
    if settings.INFERENCE_CHANNELS_LAST:
        import torch

        # Convolutions run faster on NHWC tensors with oneDNN and cuDNN; outputs stay equal
        # to the learner's (tested to 1e-4).
        learn.model.to(memory_format=torch.channels_last)
    learn.model.eval()
    return learn


def learner_vocab(learn: Any) -> list[str]:
    return [str(label) for label in learn.dls.vocab]


class ArtifactCorrupt(Exception):
    """The artifact on disk is not the file that was registered."""


def artifact_check(*, sha256: str, open_artifact: Callable[[], IO[bytes]]) -> None:
    """Raise `ArtifactCorrupt` unless the artifact's bytes hash to the registered sha256:
    a damaged or replaced pickle is never loaded."""
    digest = hashlib.sha256()
    with open_artifact() as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ArtifactCorrupt(f"the artifact on disk has sha256 {digest.hexdigest()[:12]}, "
                              f"not the registered {sha256[:12]}: it is damaged or was "
                              "replaced; register the model again")


def learner_for(*, version_id: int, sha256: str, open_artifact: Callable[[], IO[bytes]]) -> Any:
    """The cached learner of a model version, loaded on first use or when its artifact changed,
    once its bytes are checked against the registered sha256."""
    cached = _learners.get(version_id)
    if cached is not None and cached[0] == sha256:
        return cached[1]
    artifact_check(sha256=sha256, open_artifact=open_artifact)
    with open_artifact() as file:
        learn = learner_load(file)
    _learners[version_id] = (sha256, learn)
    return learn


def learners_forget_except(version_ids: Iterable[int]) -> None:
    """Drop cached learners of versions no longer active, freeing their memory."""
    keep = set(version_ids)
    for version_id in list(_learners):
        if version_id not in keep:
            del _learners[version_id]


@dataclass(frozen=True)
class InputStats:
    """What the input looked like: the first signals of domain shift (night, low resolution)."""

    brightness: float  # mean grey level, 0-255
    contrast: float  # standard deviation of the grey levels, 0-255
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


_GREY_LEVELS = range(256)
_GREY_SQUARES = [level * level for level in _GREY_LEVELS]


def input_stats(image: bytes) -> InputStats:
    """The grey levels' mean and standard deviation: PIL.ImageStat's formulas on the same
    integer sums of the histogram, taken in C rather than in a Python loop per bin (they ran
    for every case: about a tenth of the worker's time per image)."""
    with Image.open(io.BytesIO(image)) as opened:
        histogram = opened.convert("L").histogram()
        count = sum(histogram)
        total = sum(map(operator.mul, _GREY_LEVELS, histogram))
        squares = sum(map(operator.mul, _GREY_SQUARES, histogram))
        mean = total / count if count else 0
        variance = (squares - total ** 2 / count) / count if count else 0
        return InputStats(brightness=float(mean), contrast=float(math.sqrt(variance)),
                          width=opened.width, height=opened.height)


def _inputs(batch: Any) -> list[Any]:
    if not settings.INFERENCE_CHANNELS_LAST:
        return list(batch)
    import torch

    return [x.contiguous(memory_format=torch.channels_last) if getattr(x, "ndim", 0) == 4
            else x for x in batch]


@dataclass(frozen=True)
class Output:
    label: str
    confidence: float
    probabilities: dict[str, float]
    entropy: float
    latency_ms: float
    # The input of the model's last linear layer (pooled penultimate features, float32), taken
    # from the same forward pass; None for a model without a linear layer.
    features: np.ndarray | None = field(default=None, compare=False, repr=False)


def feature_layer(model: Any) -> Any:
    """The model's last `nn.Linear` (the classifier of a fastai `vision_learner`'s head, or of
    a small CNN); its input is what the out-of-domain detector compares. None if it has none."""
    from torch import nn

    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


def predict_images(learn: Any, images: list[bytes]) -> list[Output]:
    """Predict encoded images in one batch (one forward pass); probabilities keyed by label,
    and each image's features (the last linear layer's input, taken with a forward hook: no
    second pass).

    The learner's own item and batch transforms run, so outputs equal `learn.predict`.
    `latency_ms` is the batch's time shared out per image.
    """
    import torch

    started = time.perf_counter()
    dl = learn.dls.test_dl(images, num_workers=0, bs=max(1, len(images)))
    # What `learn.get_preds` computes, without its callback machinery: the model's output
    # through the loss function's activation (softmax for classifiers).
    activation = getattr(learn.loss_func, "activation", lambda x: x)
    taken: list[Any] = []
    layer = feature_layer(learn.model)
    hook = None if layer is None else layer.register_forward_hook(
        lambda _module, args, _output: taken.append(args[0].flatten(1)))
    try:
        with torch.inference_mode():
            probs = torch.cat([activation(learn.model(*_inputs(batch))).float().cpu()
                               for batch in dl])
    finally:
        if hook is not None:
            hook.remove()
    features: np.ndarray | None = None
    if taken:
        # fastai's tensor subclasses become plain tensors, then one float32 matrix.
        matrix = torch.cat([t.as_subclass(torch.Tensor).float().cpu() for t in taken])
        if len(matrix) == len(probs):  # a layer called once per item: its input is per item
            features = matrix.numpy()
    per_item_ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
    vocab = learner_vocab(learn)
    outputs = []
    for n, row in enumerate(probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        outputs.append(Output(
            label=vocab[best],
            confidence=float(row[best]),
            probabilities={label: float(p) for label, p in zip(vocab, row, strict=True)},
            entropy=float(-sum(p * math.log(p) for p in row if p > 0)),
            latency_ms=per_item_ms,
            features=None if features is None else features[n],
        ))
    return outputs
