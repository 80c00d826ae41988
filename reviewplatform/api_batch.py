"""POST /api/v1/cases/batch/: many cases in one request, each stored or refused on its own."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .api import CanSubmitCases, CaseOutputSerializer
from .api_errors import RequestTooLarge, envelope, field_errors, validation_message
from .api_fields import OffsetDateTimeField
from .api_idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from .authentication import deployment_for_submit, request_api_key
from .case_follow import case_followed_new
from .errors import ServiceError
from .intake import predictions_queue
from .models import ApiKey
from .openapi import ErrorSerializer, errors
from .services.cases import (
    METADATA_NOT_AN_OBJECT,
    case_images_deleted_on_error,
    case_prepare,
    cases_insert,
)


class CaseItemSerializer(serializers.Serializer):
    deployment = serializers.SlugField()
    region = serializers.SlugField()
    captured_at = OffsetDateTimeField()
    external_id = serializers.CharField()
    metadata = serializers.JSONField(required=False, default=dict)
    image_base64 = serializers.CharField(
        required=False,
        help_text="The image file's bytes, base64-encoded (in a multipart batch, the file "
                  "`image_<index>` instead).")

    class Meta:
        ref_name = "CaseBatchItem"

    def validate_metadata(self, value: Any) -> Any:
        if value is None:
            raise serializers.ValidationError(METADATA_NOT_AN_OBJECT)
        return value

    def validate_image_base64(self, value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("image_base64 is not valid base64") from None


class BatchInputSerializer(serializers.Serializer):
    # Each item is validated on its own (CaseItemSerializer), so that one bad item refuses
    # only itself; here only that there is a list of at most CASE_BATCH_MAX.
    cases = serializers.ListField(child=serializers.JSONField())

    def validate_cases(self, value: list[Any]) -> list[Any]:
        limit = settings.CASE_BATCH_MAX
        if not 1 <= len(value) <= limit:
            raise serializers.ValidationError(
                f"a batch holds 1 to {limit} cases (this one: {len(value)})")
        return value


class BatchDocSerializer(serializers.Serializer):
    cases = CaseItemSerializer(many=True, help_text="1 to CASE_BATCH_MAX (100) cases.")

    class Meta:
        ref_name = "CaseBatch"


class BatchMultipartDocSerializer(serializers.Serializer):
    cases = serializers.CharField(help_text=(
        "The cases as JSON text, a list of objects as in a JSON batch, each without "
        "`image_base64`: the image of the case at index i is the file field `image_<i>`."))

    class Meta:
        ref_name = "CaseBatchMultipart"


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's place in `cases`, from 0.")
    status = serializers.IntegerField(help_text="201 stored, else the refusal's 4xx.")
    case = CaseOutputSerializer(required=False, help_text="The stored case (201 only).")
    error = ErrorSerializer(required=False, help_text="Why the item was refused (4xx only).")

    class Meta:
        ref_name = "CaseBatchResult"


class BatchOutputSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True)

    class Meta:
        ref_name = "CaseBatchResults"


class BatchJSONParser(BaseParser):
    """JSON read from the request's stream rather than from `request.body` (as DRF's
    JSONParser reads it), so that the batch's own limit applies, CASE_BATCH_MAX_BYTES, checked
    before the body is read, instead of DATA_UPLOAD_MAX_MEMORY_SIZE, sized for one case."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        return JSONParser().parse(stream, media_type, parser_context)


class CaseBatchApi(APIView):
    parser_classes = [BatchJSONParser, MultiPartParser]
    permission_classes = [permissions.IsAuthenticated, CanSubmitCases]

    @extend_schema(
        tags=["cases"], summary="Submit up to 100 cases at once",
        description=(
            "A JSON object `{\"cases\": [...]}` of 1 to 100 cases (setting `CASE_BATCH_MAX`), "
            "each as the single submit's fields with the image as `image_base64`; or a "
            "multipart form with those cases as the JSON text `cases` and each image as the "
            "file `image_<index>` (from 0). Each item is "
            "stored or refused on its own, all or nothing: a refused item stores nothing, the "
            "others are stored. The answer is a 200 with one result per item, in order: "
            "`status` 201 and the `case`, or the refusal's 4xx and its `error` envelope (403 "
            "for a deployment the key is not scoped to, or one that does not exist: answered "
            "alike; 409 for an `external_id` already used). More than the limit, or no list, "
            "is a 400 for the whole request, storing nothing; a body over "
            "`CASE_BATCH_MAX_BYTES` a 413, refused before it is read."),
        request={"application/json": BatchDocSerializer,
                 "multipart/form-data": BatchMultipartDocSerializer},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: BatchOutputSerializer,
                   **errors(400, 401, 403, 409, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        _length_check(request)
        return idempotent(self, request, lambda: self._submit(request))

    def _submit(self, request: Request) -> Response:
        files = request.FILES
        multipart = request.content_type.startswith("multipart/")
        data = BatchInputSerializer(data=self._json_cases(request) if multipart
                                    else request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        api_key = request_api_key(request)
        results: list[dict[str, Any]] = []
        # One serializer validates every item (its fields made once), each on its own.
        validator = CaseItemSerializer()
        # A crash (not a refusal) rolls back every item: their images go with them.
        with case_images_deleted_on_error([]) as stored, transaction.atomic():
            for index, item in enumerate(data.validated_data["cases"]):
                result = self._item(item, validator=validator,
                                    upload=files.get(f"image_{index}"), user=user,
                                    api_key=api_key)
                if "case" in result:
                    stored.append(result["case"])
                results.append({"index": index, **result})
            # The rows of the cases prepared, in one INSERT unless one is refused.
            prepared = [r for r in results if "case" in r]
            for place, conflict in cases_insert([r["case"] for r in prepared]).items():
                result = prepared[place]
                del result["case"]
                result.update(_refusal(conflict))
            predictions_queue(cases=[r["case"] for r in results if "case" in r])
        # The cases just written, as the listing reads them (one serializer for them all).
        answered = [r for r in results if "case" in r]
        cases = CaseOutputSerializer([case_followed_new(r["case"]) for r in answered],
                                     many=True).data
        for result, case in zip(answered, cases, strict=True):
            result["case"] = case
        return Response({"results": results})

    @staticmethod
    def _json_cases(request: Request) -> dict[str, Any]:
        """A multipart batch's `cases`, read from its JSON text."""
        data: Any = request.data
        text = data.get("cases")
        try:
            return {"cases": json.loads(text) if isinstance(text, str) else text}
        except ValueError:
            raise ServiceError("cases must be JSON text: a list of cases",
                               field="cases") from None

    @staticmethod
    def _item(item: Any, *, validator: CaseItemSerializer, upload: UploadedFile | None,
              user: User, api_key: ApiKey | None) -> dict[str, Any]:
        """One item prepared (status 201 and the case, its image written, its row not yet:
        `cases_insert`) or refused, storing nothing."""
        try:
            values = validator.run_validation(item)  # as `is_valid()` runs it
        except serializers.ValidationError as exc:
            fields = field_errors(exc.detail)
            return {"status": 400,
                    "error": envelope("invalid", validation_message(fields), fields)}
        try:
            deployment = deployment_for_submit(slug=values["deployment"], api_key=api_key)
            case = case_prepare(
                deployment=deployment, region_code=values["region"],
                image=_item_image(upload, values.get("image_base64")),
                captured_at=values["captured_at"], external_id=values["external_id"],
                metadata=values["metadata"], submitted_by=user)
        except ServiceError as exc:
            return _refusal(exc)
        return {"status": 201, "case": case}


def _refusal(exc: ServiceError) -> dict[str, Any]:
    """An item's result for its refusal."""
    field = "image_base64" if exc.field == "image" else exc.field
    fields = {field: [exc.message]} if field else {}
    return {"status": exc.status_code, "error": envelope(exc.code, exc.message, fields)}


def _length_check(request: Request) -> None:
    """Refuse a body over CASE_BATCH_MAX_BYTES before reading it (a body sent without its
    length is not read at all)."""
    limit = settings.CASE_BATCH_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    # ASCII digits only (str.isdigit() takes "²", which int() refuses); more than 18 of them
    # is over any limit.
    if re.fullmatch(r"[0-9]+", length) and (len(length) > 18 or int(length) > limit):
        raise RequestTooLarge(f"the request is {length} bytes; a batch may send at most "
                              f"{limit}: send its cases in smaller batches")


def _item_image(upload: UploadedFile | None, encoded: bytes | None) -> UploadedFile:
    """An item's image: its multipart file, else its decoded `image_base64`."""
    if upload is not None:
        return upload
    if encoded is None:
        raise ServiceError("the image is missing: image_base64, or the file image_<index> in a "
                           "multipart batch", field="image")
    return SimpleUploadedFile("image", encoded)
