"""Which key answers which label on the review page.

A deployment may choose a label's key (`Deployment.label_keys`, e.g. {"grizzly": "g"}). Every
other label that is a single character is its own key (on the digits deployment `5` answers 5,
never the fifth label); the rest take 1-9 and 0 in order, skipping keys already taken. Keys
the page uses itself (cannot tell, out of domain, skip, next, zoom, brightness, contrast) are
never a label's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: c cannot tell, o out of domain, s skip, n next, z/+/=/- zoom, [ ] brightness, { } contrast
PAGE_KEYS = frozenset({"c", "o", "s", "n", "z", "+", "=", "-", "[", "]", "{", "}"})
NUMBER_KEYS = "1234567890"


def label_keys_check(labels: Sequence[str], chosen: object) -> list[str]:
    """What is wrong with keys chosen for labels (`{label: key}`), in words; [] when nothing."""
    if not isinstance(chosen, Mapping):
        return ['label keys must be an object of label to key, e.g. {"grizzly": "g"}']
    errors = []
    seen: dict[str, str] = {}
    for label, key in chosen.items():
        if label not in labels:
            errors.append(f"{label!r} is not one of the labels")
        elif not isinstance(key, str) or len(key) != 1 or not key.isprintable() or key == " ":
            errors.append(f"the key of {label!r} must be one character, got {key!r}")
        elif key.lower() in PAGE_KEYS:
            errors.append(f"{key!r} is the page's own key (c cannot tell, o out of domain, "
                          "s skip, n next, z + = - zoom, [ ] brightness, { } contrast)")
        elif key.lower() in seen:
            errors.append(f"{label!r} and {seen[key.lower()]!r} both have the key {key!r}")
        else:
            seen[key.lower()] = label
    return errors


def label_keys(labels: Sequence[str], chosen: Mapping[str, str] | None = None) -> list[str]:
    """The key of each label, in order ("" for a label past the tenth without a key).
    `chosen`: the deployment's own keys (checked with `label_keys_check`)."""
    keys: dict[str, str] = {label: key.lower() for label, key in (chosen or {}).items()
                            if label in labels}
    for label in labels:
        if label in keys:
            continue
        key = label.lower()
        if len(label) == 1 and key not in PAGE_KEYS and key not in keys.values():
            keys[label] = key
    free = iter(key for key in NUMBER_KEYS if key not in keys.values())
    return [keys[label] if label in keys else next(free, "") for label in labels]
