"""Devices: list and inspect (users), drain, disable and label (admins)."""

from typing import List

from fastapi import APIRouter, Depends

from edgefarm.shared.contract.schemas import DeviceOut, DevicePatch

from ..auth import Principal
from ..context import AppContext
from ..services import devices
from .bodies import ContractRoute
from .deps import RowId, admin, get_ctx, reader

router = APIRouter(prefix="/devices", tags=["devices"], route_class=ContractRoute)


@router.get("", response_model=List[DeviceOut])
def list_devices(ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> List[DeviceOut]:
    return devices.list_devices(ctx)


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
