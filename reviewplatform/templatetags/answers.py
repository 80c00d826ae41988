"""`{{ answer|answer_words }}`: a reviewer's answer as the review page's buttons say it (a
label as it is; "cannot tell" and "out of domain" for the two answers that are not labels)."""

from __future__ import annotations

from django import template

from ..models import Review

register = template.Library()

WORDS = {Review.CANNOT_TELL: "cannot tell", Review.OUT_OF_DOMAIN: "out of domain"}


@register.filter
def answer_words(answer: str) -> str:
    return WORDS.get(answer, answer)
