"""Devices: list and inspect (users), drain, disable and label (admins)."""

from typing import List

from fastapi import APIRouter, Depends, Request, Response

from edgefarm.shared.contract.schemas import DeviceOut, DevicePatch

from ..auth import Principal
from ..context import AppContext
from ..services import devices
from ..services.pages import Page
from .bodies import ContractRoute
from .deps import Offset, RowId, admin, get_ctx, reader
from .pages import DEFAULT_LIMIT, Limit, send_page

router = APIRouter(prefix="/devices", tags=["devices"], route_class=ContractRoute)


@router.get("", response_model=List[DeviceOut])
def list_devices(
    request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> List[DeviceOut]:
    """One page of devices in enrolment order (``X-Total-Count``, ``Link: rel="next"``); a
    lab's devices are few, so the page is cut from the described list."""
    listed = devices.list_devices(ctx)
    page = Page(listed[offset:offset + limit], len(listed), limit, offset)
    return send_page(request, response, page)


@router.get("/{device_id}", response_model=DeviceOut)
def get_device(
    device_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> DeviceOut:
    return devices.get_device(ctx, device_id)


@router.patch("/{device_id}", response_model=DeviceOut)
def patch_device(
    device_id: RowId, body: DevicePatch, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(admin),
) -> DeviceOut:
    """Drain (finish the current run, take no new one), disable, or set admin labels."""
    return devices.patch_device(ctx, device_id, body)
