"""Enumerations shared by the server, the agent and the CLI.

They are `str` enums so that they serialise as plain strings on the wire and in
the database.
"""

from enum import Enum


class StrEnum(str, Enum):
    """A str-valued enum that prints as its value (Python 3.9 has no enum.StrEnum)."""

    def __str__(self) -> str:
        return str(self.value)


class Task(StrEnum):
    classification = "classification"
    segmentation = "segmentation"
    latency = "latency"  # no dataset: latency, memory and size only


class RunState(StrEnum):
    queued = "queued"
    leased = "leased"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"

    @property
    def is_final(self) -> bool:
        return self in FINAL_RUN_STATES

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_RUN_STATES


#: A run in one of these states has ended; it never changes again.
FINAL_RUN_STATES = frozenset(
    {RunState.succeeded, RunState.failed, RunState.cancelled, RunState.lost}
)
#: A run in one of these states is held by an agent under a lease.
ACTIVE_RUN_STATES = frozenset({RunState.leased, RunState.running})


class JobState(StrEnum):
    waiting = "waiting"  # accepted, but no enrolled device matches the selector yet
    queued = "queued"
    running = "running"
    succeeded = "succeeded"  # every run succeeded
    failed = "failed"  # finished, at least one run did not succeed
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_JOB_STATES


#: A job in one of these states has ended: every run is final (or it was cancelled waiting).
FINAL_JOB_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})


class Placement(StrEnum):
    """Where a job's runs go: one set per matching device, or to any one free device
    of the matching pool (the device is chosen when an agent claims the run)."""

    each = "each"
    any = "any"


class Runtime(StrEnum):
    tflite = "tflite"
    opencv = "opencv"
    onnxruntime = "onnxruntime"
    snpe = "snpe"
    null = "null"


class Accelerator(StrEnum):
    cpu = "cpu"
    gpu = "gpu"
    dsp = "dsp"
    aip = "aip"
    npu = "npu"


class Platform(StrEnum):
    """Well-known platforms; any other lowercase name is accepted as a custom platform."""

    pc = "pc"
    rpi3 = "rpi3"
    rb5 = "rb5"


class Role(StrEnum):
    admin = "admin"
    user = "user"
    agent = "agent"
    enroll = "enroll"  # one-time: an agent exchanges it for its own token

    @classmethod
    def _missing_(cls, value: object) -> "Role":
        """``enrol``, the spelling of protocol 1's first releases, still means ``enroll``."""
        if value == "enrol":
            return cls.enroll
        raise ValueError(f"{value!r} is not a valid Role")


class ModelFormat(StrEnum):
    tflite = "tflite"
    onnx = "onnx"
    dlc = "dlc"


class Quantization(StrEnum):
    none = "none"
    fp16 = "fp16"
    dynamic = "dynamic"
    int8 = "int8"
    int16x8 = "int16x8"
    weight_only = "weight_only"


class DatasetLayout(StrEnum):
    voc_seg = "voc-seg"
    imagenet_val = "imagenet-val"
    imagefolder = "imagefolder"
    mnist_idx = "mnist-idx"
    cifar10_bin = "cifar10-bin"


class DatasetSource(StrEnum):
    uploaded = "uploaded"  # the server stores the archive; agents download it
    registered = "registered"  # already on the devices at a path; agents verify its sha256


class DeviceStatus(StrEnum):
    online = "online"
    busy = "busy"
    offline = "offline"
    draining = "draining"
    disabled = "disabled"


class ColorOrder(StrEnum):
    rgb = "rgb"
    bgr = "bgr"


class Layout(StrEnum):
    nhwc = "nhwc"
    nchw = "nchw"
