"""A deployment's guidelines for reviewers: its Markdown text, and example images per label."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from markdown_it import MarkdownIt

from reviewplatform.models import GoldCase

# CommonMark without raw HTML: a guideline cannot put markup or script on the review page,
# and markdown-it refuses javascript: and data: links by itself.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def guidelines_html(text: str) -> str:
    return _MARKDOWN.render(text) if text.strip() else ""


@dataclass(frozen=True)
class GuidelineExample:
    label: str
    case_ids: list[int]


def guideline_examples(*, deployment_id: int, per_label: int = 3) -> list[GuidelineExample]:
    """Example images per label: the gold cases marked as examples (the oldest first). Their
    answers are shown, so the gold draw leaves them out (`guideline_example_ids`)."""
    rows = (GoldCase.objects.filter(is_active=True, is_example=True,
                                    case__deployment_id=deployment_id,
                                    case__image_deleted_at__isnull=True)
            .annotate(n=Window(RowNumber(), partition_by=[F("label")],
                               order_by=[F("created_at").asc(), F("id").asc()]))
            .values_list("label", "case_id", "n"))
    examples: dict[str, list[int]] = {}
    for label, case_id, n in rows:
        if n <= per_label:
            examples.setdefault(label, []).append(case_id)
    return [GuidelineExample(label=label, case_ids=ids) for label, ids in examples.items()]
