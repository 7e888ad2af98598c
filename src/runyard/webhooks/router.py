"""Webhooks (DESIGN §11, §15): an admin's subscriptions, their delivery log, redelivery."""

from fastapi import APIRouter, Query
from starlette.responses import Response

from runyard.http.deps import AdminDep, WebhookServiceDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe a URL to events (the signing secret is in this answer only)",
    responses=problem_responses(400, 401, 403),
)
async def create_webhook(
    body: WebhookCreate, caller: AdminDep, webhooks: WebhookServiceDep
) -> Response:
    created = await webhooks.create(caller, url=body.url, events=body.events, secret=body.secret)
    return json_response(created, 201)


@router.get(
    "",
    response_model=WebhookList,
    summary="This workspace's webhooks, newest first (without secrets)",
    responses=problem_responses(400, 401, 403),
)
async def list_webhooks(
    caller: AdminDep,
    webhooks: WebhookServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    return json_response(await webhooks.list_page(caller, limit=limit, cursor=cursor))


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="A webhook",
    responses=problem_responses(401, 403, 404),
)
async def get_webhook(webhook_id: str, caller: AdminDep, webhooks: WebhookServiceDep) -> Response:
    return json_response(await webhooks.get(caller, webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Change a webhook's url, events, enabled or secret",
    responses=problem_responses(400, 401, 403, 404),
)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, caller: AdminDep, webhooks: WebhookServiceDep
) -> Response:
    updated = await webhooks.update(
        caller,
        webhook_id,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
        secret=body.secret,
    )
    return json_response(updated)


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook and its delivery log",
    responses=problem_responses(401, 403, 404),
)
async def delete_webhook(
    webhook_id: str, caller: AdminDep, webhooks: WebhookServiceDep
) -> Response:
    await webhooks.delete(caller, webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="A webhook's deliveries, newest first: status, attempts, response code, latency",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_deliveries(
    webhook_id: str,
    caller: AdminDep,
    webhooks: WebhookServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    status: DeliveryStatus | None = None,
) -> Response:
    page = await webhooks.deliveries_page(
        caller, webhook_id, limit=limit, cursor=cursor, status=status
    )
    return json_response(page)


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryOut,
    summary="One delivery of a webhook",
    responses=problem_responses(401, 403, 404),
)
async def get_delivery(
    webhook_id: str, delivery_id: str, caller: AdminDep, webhooks: WebhookServiceDep
) -> Response:
    return json_response(await webhooks.delivery(caller, webhook_id, delivery_id))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=201,
    response_model=DeliveryOut,
    summary="Send a delivery's message again: a new delivery with the same webhook-id",
    responses=problem_responses(401, 403, 404),
)
async def redeliver(
    webhook_id: str, delivery_id: str, caller: AdminDep, webhooks: WebhookServiceDep
) -> Response:
    return json_response(await webhooks.redeliver(caller, webhook_id, delivery_id), 201)
