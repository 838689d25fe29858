"""``edgefarm devices list|drain|enable|disable``: the farm's devices.

Listing needs a user token; changing a device needs an admin token (the
server answers 403 otherwise, reported with exit code 2). ``drain`` lets the
device finish its current run and take no new one; ``disable`` takes it out
of service; ``enable`` puts it back, clearing both.
"""

from __future__ import annotations

from typing import Any, Dict

from edgefarm.shared.contract.schemas import DeviceOut

from ..output import emit_json, format_bytes, print_table, say
from . import Context, add_command

#: command -> (PATCH body, what it did)
CHANGES: Dict[str, tuple] = {
    "drain": ({"draining": True}, "is draining: it finishes its current run and takes no new one"),
    "enable": ({"enabled": True, "draining": False}, "is enabled and takes new runs"),
    "disable": ({"enabled": False}, "is disabled: it takes no new runs"),
}
HELP = {
    "drain": "let a device finish its current run, then take no new one (admin)",
    "enable": "put a device back into service, clearing drain and disable (admin)",
    "disable": "take a device out of service (admin)",
}


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("devices", help="list devices; drain, enable, disable (admin)",
                                  description="List the farm's devices and change their state.")
    sub = group.add_subparsers(dest="devices_command", metavar="COMMAND", required=True)
    add_command(sub, "list", run_list, "list the devices")
    for name in CHANGES:
        p = add_command(sub, name, run_change, HELP[name])
        p.add_argument("device_id", type=int, metavar="ID")
        p.set_defaults(change=name)


def runtimes_text(device: DeviceOut) -> str:
    """``tflite 2.16 (cpu, gpu), null`` from the device's capabilities."""
    parts = []
    for runtime in device.capabilities.runtimes:
        text = runtime.name + (f" {runtime.version}" if runtime.version else "")
        if runtime.accelerators and runtime.accelerators != ["cpu"]:
            text += f" ({', '.join(runtime.accelerators)})"
        parts.append(text)
    return ", ".join(parts)


def run_list(ctx: Context) -> int:
    devices = ctx.client.list_devices()
    if ctx.json:
        emit_json([d.model_dump(mode="json") for d in devices])
        return 0
    if not devices:
        say("no devices enrolled")
        return 0
    columns = ("id", "name", "platform", "status", "labels", "runtimes", "cores", "memory", "run",
               "last seen")
    rows = [(d.id, d.name, d.platform, d.status, d.labels, runtimes_text(d), d.capabilities.cores,
             format_bytes(d.capabilities.memory_bytes), d.current_run_id, d.last_seen_at)
            for d in devices]
    print_table(columns, rows, right=("id", "cores", "memory", "run"))
    return 0


def run_change(ctx: Context) -> int:
    body, outcome = CHANGES[ctx.args.change]
    device = ctx.client.patch_device(ctx.args.device_id, body)
    if ctx.json:
        emit_json(device.model_dump(mode="json"))
    else:
        say(f"device {device.id} ({device.name}) {outcome}; status {device.status}")
    return 0
