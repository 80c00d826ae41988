"""The REST API for a client's webhook endpoints: create, list, change, rotate the secret,
delete, ping, and read and redeliver their deliveries. An endpoint is told of the cases its
owner submits; another account's endpoint is a 404, as one that does not exist."""

from __future__ import annotations

import json
from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webhooks.models import EVENT_TYPES, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    delivery_redeliver,
    endpoint_change,
    endpoint_create,
    endpoint_ping,
    secret_rotate,
)

from .api_pagination import CheckedCursorPagination
from .errors import NotFound
from .instants import instant_text
from .openapi import errors
from .tasks import webhooks_drain_soon

TAGS = ["webhooks"]


class CanManageWebhooks(permissions.BasePermission):
    message = ("this account may not manage webhook endpoints (it needs the "
               "webhooks.add_webhookendpoint permission)")

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("webhooks.add_webhookendpoint"))


class EndpointOut(serializers.ModelSerializer):
    previous_secret_until = serializers.SerializerMethodField(
        help_text="While set and in the future, deliveries are also signed with the secret "
                  "before the last rotation.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "event_types", "is_active", "disabled_reason",
                  "created_at", "updated_at", "previous_secret_until"]
        ref_name = "WebhookEndpoint"

    def get_previous_secret_until(self, endpoint: WebhookEndpoint) -> str | None:
        until = endpoint.previous_secret_until
        return instant_text(until) if until and until > timezone.now() else None


class EndpointWithSecretOut(EndpointOut):
    secret = serializers.CharField(help_text=(
        "The signing secret (`whsec_` + base64), shown only here: when the endpoint is "
        "created and when its secret is rotated."))

    class Meta(EndpointOut.Meta):
        fields = [*EndpointOut.Meta.fields, "secret"]
        ref_name = "WebhookEndpointWithSecret"


def _event_types_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), allow_empty=False,
        help_text=f"Any of {', '.join(EVENT_TYPES)}.", **kwargs)


class EndpointIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="https:// (or http://) URL.")
    event_types = _event_types_field(required=False, default=["case.decided"])
    description = serializers.CharField(max_length=200, required=False, default="",
                                        allow_blank=True)

    class Meta:
        ref_name = "WebhookEndpointCreate"


class EndpointChangeIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000, required=False)
    event_types = _event_types_field(required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(
        required=False, help_text="true turns back on an endpoint turned off (by its owner, "
                                  "or after it answered 410 Gone); its waiting deliveries go "
                                  "out again.")

    class Meta:
        ref_name = "WebhookEndpointChange"


class AttemptOut(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "error", "response_excerpt", "milliseconds"]
        ref_name = "WebhookAttempt"


class DeliveryOut(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event_uid", help_text=(
        "The `webhook-id` header: the same at every attempt. Deduplicate on it."))
    payload = serializers.SerializerMethodField(help_text="The body sent, as JSON.")
    next_attempt_at = serializers.SerializerMethodField()
    attempt_log = AttemptOut(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "event_id", "event_type", "status", "attempts", "next_attempt_at",
                  "retry_until", "last_status_code", "last_error", "created_at",
                  "finished_at", "payload", "attempt_log"]
        ref_name = "WebhookDelivery"

    def get_payload(self, delivery: WebhookDelivery) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(delivery.body))

    def get_next_attempt_at(self, delivery: WebhookDelivery) -> str | None:
        if delivery.status != WebhookDelivery.Status.PENDING:
            return None
        return instant_text(delivery.next_attempt_at)


class DeliveryCursorPagination(CheckedCursorPagination):
    """Newest first, 50 deliveries a page unless asked for up to 200."""

    ordering = ("-id",)


class _OwnEndpoints(APIView):
    permission_classes = [permissions.IsAuthenticated, CanManageWebhooks]

    def endpoints(self) -> QuerySet[WebhookEndpoint]:
        return WebhookEndpoint.objects.filter(owner=cast(User, self.request.user))

    def endpoint(self, endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
        endpoints = self.endpoints().select_for_update() if lock else self.endpoints()
        endpoint = endpoints.filter(pk=endpoint_id).first()
        if endpoint is None:
            raise NotFound(f"webhook endpoint {endpoint_id} does not exist or is not yours")
        return endpoint

    def delivery(self, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
        delivery = (WebhookDelivery.objects.filter(endpoint__in=self.endpoints(),
                                                   endpoint_id=endpoint_id, pk=delivery_id)
                    .prefetch_related("attempt_log").first())
        if delivery is None:
            raise NotFound(f"delivery {delivery_id} of webhook endpoint {endpoint_id} does "
                           "not exist or is not yours")
        return delivery


def _location(endpoint: WebhookEndpoint) -> dict[str, str]:
    return {"Location": reverse("api-webhook-detail", args=[endpoint.pk])}


class WebhookEndpointsApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="Your webhook endpoints",
                   responses={200: EndpointOut(many=True), **errors(401, 403, 429)})
    def get(self, request: Request) -> Response:
        return Response(EndpointOut(self.endpoints(), many=True).data)

    @extend_schema(tags=TAGS, summary="Register a webhook endpoint",
                   description=(
                       "Events of the cases you submit are POSTed to `url`, signed the "
                       "Standard Webhooks way with the `secret` in the answer (shown only "
                       "here). `event_types` defaults to `case.decided`. Refused with a 400: "
                       "a URL that is not http(s), carries a password, or names this machine "
                       "or a private address; an unknown event type. A 409 past the most "
                       "endpoints an account may have."),
                   request=EndpointIn,
                   responses={201: EndpointWithSecretOut, **errors(400, 401, 403, 409, 429)})
    def post(self, request: Request) -> Response:
        data = EndpointIn(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = endpoint_create(owner=cast(User, request.user), **data.validated_data)
        return Response(EndpointWithSecretOut(endpoint).data, status=status.HTTP_201_CREATED,
                        headers=_location(endpoint))


class WebhookEndpointApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="One of your webhook endpoints",
                   responses={200: EndpointOut, **errors(401, 403, 404, 429)})
    def get(self, request: Request, endpoint_id: int) -> Response:
        return Response(EndpointOut(self.endpoint(endpoint_id)).data)

    @extend_schema(tags=TAGS, summary="Change a webhook endpoint",
                   request=EndpointChangeIn,
                   responses={200: EndpointOut, **errors(400, 401, 403, 404, 429)})
    def patch(self, request: Request, endpoint_id: int) -> Response:
        data = EndpointChangeIn(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = endpoint_change(self.endpoint(endpoint_id), **data.validated_data)
        if endpoint.is_active:
            webhooks_drain_soon()
        return Response(EndpointOut(endpoint).data)

    @extend_schema(tags=TAGS, summary="Delete a webhook endpoint",
                   description="Its deliveries and their log go with it.",
                   responses={204: None, **errors(401, 403, 404, 429)})
    def delete(self, request: Request, endpoint_id: int) -> Response:
        self.endpoint(endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotateApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="Rotate a webhook endpoint's secret",
                   description=(
                       "A new secret, shown only in this answer. For the next "
                       "WEBHOOK_SECRET_ROTATION_HOURS (24) deliveries carry a signature with "
                       "each secret, so a receiver can switch without dropping one."),
                   request=None,
                   responses={200: EndpointWithSecretOut, **errors(401, 403, 404, 429)})
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = secret_rotate(self.endpoint(endpoint_id), now=timezone.now())
        return Response(EndpointWithSecretOut(endpoint).data)


class WebhookPingApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="Send a test event to a webhook endpoint",
                   description=(
                       "Queues a `webhook.ping`, sent and retried like any event; its "
                       "delivery, in the answer, shows how the endpoint answered."),
                   request=None,
                   responses={202: DeliveryOut, **errors(401, 403, 404, 429)})
    def post(self, request: Request, endpoint_id: int) -> Response:
        delivery = endpoint_ping(self.endpoint(endpoint_id), now=timezone.now())
        webhooks_drain_soon()
        return Response(DeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)


STATUS_PARAMETER = OpenApiParameter("status", str, enum=WebhookDelivery.Status.values,
                                    description="Only the deliveries in this state.")


class WebhookDeliveriesApi(_OwnEndpoints, generics.ListAPIView):
    serializer_class = DeliveryOut
    pagination_class = DeliveryCursorPagination

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator, no user
            return WebhookDelivery.objects.none()
        deliveries = (self.endpoint(self.kwargs["endpoint_id"]).deliveries
                      .prefetch_related("attempt_log"))
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in WebhookDelivery.Status.values:
                raise exceptions.ValidationError({"status": [
                    f"{wanted} is not one of {', '.join(WebhookDelivery.Status.values)}"]})
            deliveries = deliveries.filter(status=wanted)
        return deliveries

    @extend_schema(tags=TAGS, summary="A webhook endpoint's deliveries, newest first",
                   description="Each with its attempts: when, what the endpoint answered or "
                               "why nothing came back, and how long it took. 50 a page "
                               "unless `page_size` asks for 1 to 200; follow `next` and "
                               "`previous` as they are. A bad `status`, `page_size` or "
                               "cursor is a 400 naming it.",
                   parameters=[STATUS_PARAMETER],
                   responses={200: DeliveryOut(many=True), **errors(400, 401, 403, 404, 429)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class WebhookDeliveryApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="One delivery, with its attempts",
                   responses={200: DeliveryOut, **errors(401, 403, 404, 429)})
    def get(self, request: Request, endpoint_id: int, delivery_id: int) -> Response:
        return Response(DeliveryOut(self.delivery(endpoint_id, delivery_id)).data)


class WebhookRedeliverApi(_OwnEndpoints):
    @extend_schema(tags=TAGS, summary="Send a delivery again",
                   description=(
                       "The same event id and body, signed afresh, with a new retry window. "
                       "A 409 while the delivery is still being sent."),
                   request=None,
                   responses={202: DeliveryOut, **errors(401, 403, 404, 409, 429)})
    def post(self, request: Request, endpoint_id: int, delivery_id: int) -> Response:
        delivery = delivery_redeliver(self.delivery(endpoint_id, delivery_id),
                                      now=timezone.now())
        webhooks_drain_soon()
        return Response(DeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)
