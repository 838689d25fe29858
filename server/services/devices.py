"""Devices: list and describe (with their status and current run), and an
admin's changes (drain, disable, labels), which may give the device the runs
of jobs that were waiting for one."""

from typing import List

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefarm.shared.contract.schemas import DeviceOut, DevicePatch

from ..context import AppContext
from ..queue import active_run_for_device, expand_waiting_jobs, notify_new_work
from ..tables import Device
from .convert import device_out
from .lookups import get_row


def describe(session: Session, device: Device, ctx: AppContext) -> DeviceOut:
    current = active_run_for_device(session, device.id)
    return device_out(device, current, ctx.settings.offline_after_seconds)


def list_devices(ctx: AppContext) -> List[DeviceOut]:
    with ctx.db.read() as session:
        return [describe(session, d, ctx) for d in session.scalars(select(Device).order_by(Device.id))]


def get_device(ctx: AppContext, device_id: int) -> DeviceOut:
    with ctx.db.read() as session:
        return describe(session, get_row(session, Device, device_id, "device"), ctx)


def patch_device(ctx: AppContext, device_id: int, patch: DevicePatch) -> DeviceOut:
    """Drain (finish the current run, take no new one), disable, or set admin labels."""
    with ctx.db.write() as session:
        device = get_row(session, Device, device_id, "device")
        if patch.labels is not None:
            device.labels = sorted(set(patch.labels))
        if patch.draining is not None:
            device.draining = patch.draining
        if patch.enabled is not None:
            device.enabled = patch.enabled
        made = expand_waiting_jobs(session, device) if device.enabled else 0
        if made:
            notify_new_work(session)
        out = describe(session, device, ctx)
    # its queued runs may be claimable now (enabled, no longer draining, new runs)
    ctx.waker.notify([device_id])
    return out
