"""Webhooks (admin only): register a URL for some events, list and remove them,
and list each one's deliveries with their status."""

from typing import List, Optional

from fastapi import APIRouter, Depends, Query, Request, Response

from edgefarm.shared.contract.watch import DeliveryOut, WebhookCreate, WebhookOut

from ..auth import Principal
from ..context import AppContext
from ..services import webhooks
from .bodies import ContractRoute
from .deps import Offset, RowId, admin, get_ctx
from .pages import DEFAULT_LIMIT, Limit, send_page

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=ContractRoute)


@router.post("", response_model=WebhookOut, status_code=201)
def create_webhook(
    body: WebhookCreate, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin),
) -> WebhookOut:
    """Register a URL; the answer's ``secret`` signs its deliveries and is shown only here."""
    return webhooks.create_webhook(ctx, body)


@router.get("", response_model=List[WebhookOut])
def list_webhooks(
    request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin),
):
    return send_page(request, response, webhooks.list_webhooks(ctx, limit, offset))


@router.delete("/{webhook_id}", response_model=WebhookOut)
def delete_webhook(
    webhook_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin),
) -> WebhookOut:
    return webhooks.delete_webhook(ctx, webhook_id)


@router.get("/{webhook_id}/deliveries", response_model=List[DeliveryOut])
def list_deliveries(
    webhook_id: RowId, request: Request, response: Response,
    state: Optional[str] = Query(None, pattern="^(pending|delivered|failed)$"),
    limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin),
):
    """The webhook's deliveries, newest first: state, attempts, last error, response code."""
    return send_page(request, response, webhooks.list_deliveries(ctx, webhook_id, state, limit, offset))
