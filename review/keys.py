"""Which key answers which label on the review page.

A label that is a single character is its own key (on the digits deployment `5` answers 5,
never the fifth label); the others take 1-9 and 0 in order, skipping keys already taken. Keys
the page uses itself (cannot tell, out of domain, skip, next, zoom, brightness, contrast) are
never a label's."""

from __future__ import annotations

from collections.abc import Sequence

#: c cannot tell, o out of domain, s skip, n next, z/+/=/- zoom, [ ] brightness, { } contrast
PAGE_KEYS = frozenset({"c", "o", "s", "n", "z", "+", "=", "-", "[", "]", "{", "}"})
NUMBER_KEYS = "1234567890"


def label_keys(labels: Sequence[str]) -> list[str]:
    """The key of each label, in order ("" for a label past the tenth without a key)."""
    keys: dict[str, str] = {}
    for label in labels:
        key = label.lower()
        if len(label) == 1 and key not in PAGE_KEYS and key not in keys.values():
            keys[label] = key
    free = iter(key for key in NUMBER_KEYS if key not in keys.values())
    return [keys[label] if label in keys else next(free, "") for label in labels]
