"""Loading exported fastai learners and predicting with them.

A learner is loaded once per worker process and kept while its version's artifact is unchanged.
Nothing here touches the database: callers predict outside any transaction.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings

_learners: dict[int, tuple[str, Any]] = {}


def learner_load(file: IO[bytes] | str) -> Any:
    """Load an exported learner (a pickle: only for artifacts an administrator registered)."""
    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*insecure pickle.*")
        learn = load_learner(file, cpu=settings.INFERENCE_DEVICE == "cpu")
    if settings.INFERENCE_DEVICE == "cuda":
        learn.dls.to("cuda")
        learn.model.to("cuda")
    learn.model.eval()
    return learn


def learner_vocab(learn: Any) -> list[str]:
    return [str(label) for label in learn.dls.vocab]


def learner_for(*, version_id: int, sha256: str, open_artifact: Any) -> Any:
    """The cached learner of a model version, loaded on first use or when its artifact changed."""
    cached = _learners.get(version_id)
    if cached is not None and cached[0] == sha256:
        return cached[1]
    with open_artifact() as file:
        learn = learner_load(file)
    _learners[version_id] = (sha256, learn)
    return learn


@dataclass(frozen=True)
class Output:
    label: str
    confidence: float
    probabilities: dict[str, float]
    entropy: float
    latency_ms: float


def predict_images(learn: Any, images: list[bytes]) -> list[Output]:
    """Predict encoded images in one batch; each output's probabilities are keyed by label."""
    import torch

    started = time.perf_counter()
    dl = learn.dls.test_dl(images, num_workers=0, bs=max(1, len(images)))
    with learn.no_bar(), learn.no_logging(), torch.inference_mode():
        probs, _ = learn.get_preds(dl=dl)
    per_item_ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
    vocab = learner_vocab(learn)
    outputs = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        outputs.append(Output(
            label=vocab[best],
            confidence=float(row[best]),
            probabilities={label: float(p) for label, p in zip(vocab, row, strict=True)},
            entropy=float(-sum(p * math.log(p) for p in row if p > 0)),
            latency_ms=per_item_ms,
        ))
    return outputs
