"""The review page's keys: a one-character label is its own key, so no key answers another
label than the one it names."""

from __future__ import annotations

import re

import pytest

from review.keys import label_keys, label_keys_check
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


@pytest.mark.parametrize("labels, chosen, keys", [
    # Chosen keys first; the others as before, skipping the keys taken.
    (["black", "grizzly", "teddy"], {"grizzly": "g", "black": "B"}, ["b", "g", "1"]),
    # A digit chosen for a word takes that number from the words after it.
    (["cat", "dog"], {"dog": "1"}, ["2", "1"]),
    # A one-character label's own key may go to another label.
    (["a", "b"], {"b": "a"}, ["1", "a"]),
])
def test_a_deployment_chooses_keys_for_its_labels(labels, chosen, keys):
    assert label_keys_check(labels, chosen) == []
    assert label_keys(labels, chosen) == keys


@pytest.mark.parametrize("chosen, error", [
    ({"lion": "l"}, "'lion' is not one of the labels"),
    ({"black": "bk"}, "the key of 'black' must be one character, got 'bk'"),
    ({"black": 7}, "the key of 'black' must be one character, got 7"),
    ({"black": "s"}, "'s' is the page's own key"),
    ({"black": "b", "teddy": "B"}, "'teddy' and 'black' both have the key 'B'"),
    (["b"], "label keys must be an object of label to key"),
])
def test_keys_that_would_clash_are_refused_with_the_reason(chosen, error):
    (message,) = label_keys_check(["black", "grizzly", "teddy"], chosen)
    assert message.startswith(error)


def test_the_admin_saves_chosen_keys_the_review_page_shows_them_and_refuses_clashes(
        client, enqueue, reviewer, admin_user, deployment):
    client.force_login(admin_user)
    url = f"/admin/reviewplatform/deployment/{deployment.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data.update({"regions-TOTAL_FORMS": "0", "regions-INITIAL_FORMS": "0"})
    for i, region in enumerate(deployment.regions.all()):
        data.update({f"regions-{i}-id": region.pk, f"regions-{i}-code": region.code,
                     f"regions-{i}-name": region.name, f"regions-{i}-timezone": region.timezone,
                     f"regions-{i}-deployment": deployment.pk})
        data["regions-TOTAL_FORMS"] = data["regions-INITIAL_FORMS"] = str(i + 1)

    refused = client.post(url, {**data, "label_keys": '{"4": "s"}'})
    assert refused.status_code == 200
    assert "is the page&#x27;s own key" in refused.content.decode()
    deployment.refresh_from_db()
    assert deployment.label_keys == {}

    saved = client.post(url, {**data, "label_keys": '{"4": "f", "5": "4"}'})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    deployment.refresh_from_db()
    assert deployment.label_keys == {"4": "f", "5": "4"}

    enqueue()
    task = review_claim_next(reviewer=reviewer)
    client.force_login(reviewer)
    page = client.get(f"/review/tasks/{task.pk}/").content.decode()
    buttons = dict(re.findall(r'value="(\d)" data-key="(\w)"', page))
    assert (buttons["4"], buttons["5"], buttons["3"]) == ("f", "4", "3")
    assert buttons["0"] == "0" and "5" not in buttons.values()
