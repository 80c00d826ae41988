"""Serializer fields built once per class: each serializer still binds fields of its own, so
two serializers never share a field's parent, name or validation state."""

from __future__ import annotations

from rest_framework import serializers

from reviewplatform.api import CaseOutputSerializer, CasesApi
from reviewplatform.api_fields import FieldsBuiltOnce


class Listed(FieldsBuiltOnce, serializers.Serializer):
    name = serializers.CharField(max_length=3)
    tags = serializers.ListField(child=serializers.CharField(max_length=2))


def test_each_serializer_binds_its_own_fields():
    one, two = CasesApi.InputSerializer(), CasesApi.InputSerializer()
    assert one.fields["region"] is not two.fields["region"]
    assert one.fields["region"].parent is one and two.fields["region"].parent is two
    assert "_fields_built" in CasesApi.InputSerializer.__dict__
    out_one, out_two = CaseOutputSerializer(), CaseOutputSerializer()
    assert out_one.fields["timeline"].parent is out_one
    assert out_two.fields["timeline"].parent is out_two


def test_validation_of_one_serializer_leaves_the_next_untouched():
    bad = Listed(data={"name": "toolong", "tags": ["abc"]})
    assert not bad.is_valid()
    assert set(bad.errors) == {"name", "tags"}
    good = Listed(data={"name": "ok", "tags": ["ab", "cd"]})
    assert good.is_valid(), good.errors
    assert good.validated_data == {"name": "ok", "tags": ["ab", "cd"]}
    # A field holding a child is copied deep: its child is bound to this serializer's field.
    assert good.fields["tags"].child.parent is good.fields["tags"]
    assert bad.fields["tags"].child is not good.fields["tags"].child
