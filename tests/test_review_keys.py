"""The review page's keys: a one-character label is its own key, so no key answers another
label than the one it names."""

from __future__ import annotations

import re

import pytest

from review.keys import label_keys
from review.services import review_claim_next
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


@pytest.mark.parametrize("labels, keys", [
    # Digits: each digit answers itself, whatever its position.
    ([str(n) for n in range(10)], [str(n) for n in range(10)]),
    (["9", "8", "7"], ["9", "8", "7"]),
    # Words take 1-9 then 0 in order.
    (["black", "grizzly", "teddy"], ["1", "2", "3"]),
    # Mixed: words skip the keys single-character labels hold.
    (["1", "cat", "dog", "2"], ["1", "3", "4", "2"]),
    # The page's own keys (cannot tell, out of domain, skip, next, zoom) are never a label's.
    (["c", "o", "a"], ["1", "2", "a"]),
    # The same letter twice: the second takes a number.
    (["A", "a"], ["a", "1"]),
    # Past ten keys: none.
    ([f"label-{n}" for n in range(11)], [*"1234567890", ""]),
])
def test_each_label_gets_its_key(labels, keys):
    assert label_keys(labels) == keys


def test_the_review_page_shows_each_label_with_its_own_key(client, enqueue, reviewer):
    enqueue()
    task = review_claim_next(reviewer=reviewer)
    client.force_login(reviewer)

    page = client.get(f"/review/tasks/{task.pk}/").content.decode()

    buttons = re.findall(r'value="(\d)" data-key="(\d)"', page)
    assert buttons == [(str(n), str(n)) for n in range(10)]
