"""A rollout simulator: the platform's own services driven through simulated time.

A scenario file (`scenario`) says how cases arrive per region (`arrivals`), how often the model
is right (`model`), who reviews (`reviewers`) and which policy changes are published; the
runner (`runner`) plays it on a simulated clock (`clock`) through the real services and counts
what happened (`summary`). It sits in the project layer: it drives the review queue and the
rollout together, as the worker, the pages and beat do. `manage.py simulate SCENARIO`.
"""

from .runner import PREDICTED, STORED, simulate
from .scenario import Scenario, ScenarioError, scenario_load
from .setup import deployment_prepare, digit_images
from .summary import Summary

__all__ = [
    "PREDICTED",
    "STORED",
    "Scenario",
    "ScenarioError",
    "Summary",
    "deployment_prepare",
    "digit_images",
    "scenario_load",
    "simulate",
]
