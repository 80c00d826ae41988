"""Reading a scenario file's tables with types checked: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and the key."""


class Reader:
    """Typed access to one table of the file; every error names the file and the key."""

    def __init__(self, path: Path, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(f"{path}: [{where}] must be a table")
        self.path, self.table, self.where = path, table, where

    def fail(self, key: str, message: str) -> ScenarioError:
        at = f"{self.where}.{key}" if self.where else key
        return ScenarioError(f"{self.path}: {at}: {message}")

    def check_keys(self, known: set[str]) -> None:
        unknown = sorted(set(self.table) - known)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        return self.table[key]

    def number(self, key: str, default: Any = ..., *, low: float = 0.0,
               high: float | None = None) -> float:
        value = self.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(key, f"must be a number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise self.fail(key, f"must be {bound}, got {value!r}")
        return float(value)

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def pair(self, key: str, default: Any = ..., *, low: float = 0.0,
             high: float | None = None) -> tuple[float, float]:
        value = self.get(key, default)
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in value)):
            raise self.fail(key, f"must be a pair of numbers [low, high], got {value!r}")
        a, b = float(value[0]), float(value[1])
        if a > b or a < low or (high is not None and b > high):
            raise self.fail(key, f"must be [low, high] with {low:g} <= low <= high"
                            + (f" <= {high:g}" if high is not None else "") + f", got {value!r}")
        return a, b

    def tables(self, key: str) -> list[Reader]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, "must be an array of tables ([[...]])")
        return [Reader(self.path, item, f"{key}[{i}]") for i, item in enumerate(value)]


def timezone_name(reader: Reader, key: str, default: Any = ...) -> str:
    name = reader.text(key, default)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise reader.fail(key, f"unknown time zone {name!r}") from exc
    return name


def hours(reader: Reader, key: str, default: Any) -> tuple[int, int]:
    low, high = reader.pair(key, default, low=0, high=24)
    if low != int(low) or high != int(high) or low == high:
        raise reader.fail(key, "must be two whole hours [start, end) with start < end")
    return int(low), int(high)
