"""Models for learners that misbehave in a worker process. They live in a module of their own,
which a worker imports when it unpickles such a learner (tests/ is on its PYTHONPATH)."""

from __future__ import annotations

import time

import torch
from torch import nn


class Sleeping(nn.Module):
    """A model that answers (uniform probabilities) only after `seconds`: a forward pass that
    hangs."""

    def __init__(self, seconds: float, classes: int) -> None:
        super().__init__()
        self.seconds = seconds
        self.classes = classes
        self.weight = nn.Parameter(torch.zeros(1))  # exporting builds an optimizer: needs one

    def forward(self, x):
        time.sleep(self.seconds)
        return torch.zeros(x.shape[0], self.classes) + self.weight
