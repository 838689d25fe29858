"""Devices: list and inspect (users), drain, disable and label (admins)."""

from typing import List

from fastapi import APIRouter, Depends
from sqlalchemy import select

from edgefarm.shared.contract.schemas import DeviceOut, DevicePatch

from ..auth import Principal
from ..context import AppContext
from ..convert import device_out
from ..problems import not_found
from ..queue import active_run_for_device, expand_waiting_jobs
from ..tables import Device
from .deps import admin, get_ctx, reader

router = APIRouter(prefix="/devices", tags=["devices"])


def describe(session, device: Device, ctx: AppContext) -> DeviceOut:
    current = active_run_for_device(session, device.id)
    return device_out(device, current, ctx.settings.offline_after_seconds)


@router.get("", response_model=List[DeviceOut])
def list_devices(ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> List[DeviceOut]:
    with ctx.db.read() as session:
        return [describe(session, d, ctx) for d in session.scalars(select(Device).order_by(Device.id))]


@router.get("/{device_id}", response_model=DeviceOut)
def get_device(
    device_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> DeviceOut:
    with ctx.db.read() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise not_found("device", device_id)
        return describe(session, device, ctx)


@router.patch("/{device_id}", response_model=DeviceOut)
def patch_device(
    device_id: int, body: DevicePatch, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(admin),
) -> DeviceOut:
    """Drain (finish the current run, take no new one), disable, or set admin labels."""
    with ctx.db.write() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise not_found("device", device_id)
        if body.labels is not None:
            device.labels = sorted(set(body.labels))
        if body.draining is not None:
            device.draining = body.draining
        if body.enabled is not None:
            device.enabled = body.enabled
        made = expand_waiting_jobs(session, device) if device.enabled else 0
        out = describe(session, device, ctx)
    if made:
        ctx.waker.notify()
    return out
