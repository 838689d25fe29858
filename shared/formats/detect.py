"""Model file formats: which format a file is, judged by its content alone.

This module owns:

* ``detect_format(path)``: "tflite", "onnx" or "dlc" from the file's bytes alone;
  the name and extension are never looked at. It reads only what it needs, so it
  is safe on files of many gigabytes.
* ``tflite_header_problem(head, size)``: why 8 bytes do not start a TFLite file
  (``tflite`` reads the rest).
* ``ModelFormatError``: raised, with a message meant for a person, for anything
  that is not a model of these formats or is damaged or truncated.

What is recognised
------------------
TFLite
    Bytes 4..8 are the flatbuffer file identifier ``TFL3`` and the root table
    offset in bytes 0..4 (little-endian) points inside the file.
ONNX
    There is no magic number: the file must parse as a protobuf ``ModelProto``
    at the top level. Every top-level key must carry a field of ModelProto
    (onnx.proto: 1 ir_version, 2..4 producer/domain strings, 5 model_version,
    6 doc_string, 7 graph, 8 opset_import, 14 metadata_props, 20 training_info,
    25 functions, 26 configuration) with that field's wire type; unknown field
    numbers up to 100 are tolerated with a valid wire type (0, 1, 2 or 5) for
    forward compatibility. Lengths must stay inside the file and the walk must
    end exactly at its end. Field 1 (ir_version, between 1 and 100) and field 7
    (graph) must both be present. Payloads are skipped by seeking, not read.
SNPE / QAIRT DLC
    Qualcomm does not publish the DLC layout. What is recognised follows the DLC
    reader of the Netron model viewer (lutzroeder/netron, ``source/dlc.js``),
    which is built from real files of SNPE 1.x and 2.x: a DLC is a ZIP archive
    (``PK\\x03\\x04`` at byte 0) with a top-level member ``model`` (the graph)
    and/or ``model.params`` (the weights), usually beside ``dlc.metadata``
    (``key=value`` lines such as converter-command). Inside, SNPE 1.x writes
    "v3" records, ``NETD``/``NETP`` flatbuffers, bare or after the header
    ``D5 0A 03 00 00 00 00 00`` (older files: "v2", header ``D5 0A 02 00``);
    SNPE 2.x and QAIRT write "v4" records (header ``D5 0A 04 00 00 00 00 00``,
    then a ``NETD``, ``NETP`` or ``NR64`` flatbuffer) in the same ZIP
    container (Netron issue #1037 compares files from SNPE 1.68 and 2.05);
    a public repair script for qairt-converter 2.48 output lists members
    ``model``, ``model.params``, ``model.params.bin``, ``dlc.metadata2.3.0`` and
    ``dlc.metadata.history.2.3.0``. Only the ZIP central directory (member names)
    is read, so member contents and CRCs are not checked. No other top-level
    magic is documented for any version: a ZIP without ``model`` or
    ``model.params`` is not a DLC, and a bare record extracted from a DLC is not
    recognised.

Pure standard library; runs on Python 3.9 and later.
"""

import os
import struct
import zipfile
from typing import IO, Optional

FORMAT_TFLITE = "tflite"
FORMAT_ONNX = "onnx"
FORMAT_DLC = "dlc"

_NOT_A_MODEL = (
    "not a model file: the content is neither a TFLite flatbuffer (identifier TFL3), "
    "an ONNX protobuf nor an SNPE DLC container"
)


class ModelFormatError(ValueError):
    """The file is not a model of a recognised format, or it is damaged; the message says why."""


# ---------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------

_TFLITE_IDENTIFIER = b"TFL3"
_ZIP_MAGIC = b"PK\x03\x04"
_DLC_MEMBERS = frozenset({"model", "model.params"})


def detect_format(path) -> str:
    """Return "tflite", "onnx" or "dlc" for the model file at ``path``, judged by content.

    Raises ModelFormatError when the content is none of them, and OSError when the file
    cannot be read.
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            raise ModelFormatError(f"{path}: empty file (0 bytes), not a model file")
        head = stream.read(8)
        if tflite_header_problem(head, size) is None:
            return FORMAT_TFLITE
        if head.startswith(_ZIP_MAGIC):
            _check_dlc_zip(stream, path)
            return FORMAT_DLC
        if _is_onnx_model(stream, size):
            return FORMAT_ONNX
    raise ModelFormatError(f"{path}: {_NOT_A_MODEL}")


def tflite_header_problem(head: bytes, size: int) -> Optional[str]:
    """Why the first 8 bytes are not a TFLite header, or None when they are one."""
    if len(head) < 8 or head[4:8] != _TFLITE_IDENTIFIER:
        return "bytes 4..8 are not the TFLite flatbuffer identifier TFL3"
    root = struct.unpack_from("<I", head)[0]
    if not 8 <= root < size:
        return f"its root table offset {root} lies outside the {size}-byte file"
    return None


def _check_dlc_zip(stream: IO[bytes], path) -> None:
    """Raise ModelFormatError unless the ZIP archive has the members of an SNPE DLC."""
    try:
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ModelFormatError(f"{path}: a damaged ZIP archive ({exc}), not a model file") from exc
    if _DLC_MEMBERS.isdisjoint(names):
        shown = ", ".join(sorted(names)[:5]) or "no members"
        raise ModelFormatError(
            f"{path}: a ZIP archive but not an SNPE DLC container: it has no 'model' or "
            f"'model.params' member (it holds {shown}{', ...' if len(names) > 5 else ''})"
        )


# Top-level fields of onnx.proto's ModelProto and their protobuf wire types.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_ONNX_MODEL_FIELDS = {
    1: _VARINT, 2: _LENGTH_DELIMITED, 3: _LENGTH_DELIMITED, 4: _LENGTH_DELIMITED,
    5: _VARINT, 6: _LENGTH_DELIMITED, 7: _LENGTH_DELIMITED, 8: _LENGTH_DELIMITED,
    14: _LENGTH_DELIMITED, 20: _LENGTH_DELIMITED, 25: _LENGTH_DELIMITED,
    26: _LENGTH_DELIMITED,
}
_ONNX_IR_VERSION, _ONNX_GRAPH = 1, 7
_ONNX_IR_VERSION_MAX = 100
_ONNX_UNKNOWN_FIELD_MAX = 100


def _is_onnx_model(stream: IO[bytes], size: int) -> bool:
    """Walk the top-level protobuf fields of a would-be ModelProto, seeking over payloads."""
    stream.seek(0)
    seen = set()
    while stream.tell() < size:
        key = _read_varint(stream)
        if key is None or not _onnx_field_allowed(key >> 3, key & 7):
            return False
        value = _consume_field_value(stream, key & 7, size)
        if value is None:
            return False
        if key >> 3 == _ONNX_IR_VERSION and not 1 <= value <= _ONNX_IR_VERSION_MAX:
            return False
        seen.add(key >> 3)
    return _ONNX_IR_VERSION in seen and _ONNX_GRAPH in seen


def _onnx_field_allowed(number: int, wire_type: int) -> bool:
    expected = _ONNX_MODEL_FIELDS.get(number)
    if expected is not None:
        return wire_type == expected
    valid_wire_type = wire_type in (_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32)
    return 0 < number <= _ONNX_UNKNOWN_FIELD_MAX and valid_wire_type


def _consume_field_value(stream: IO[bytes], wire_type: int, size: int) -> Optional[int]:
    """Move past one field value. Return the varint itself, or the payload length for the
    other wire types; None when the value runs past the end of the file."""
    if wire_type == _VARINT:
        return _read_varint(stream)
    if wire_type == _LENGTH_DELIMITED:
        length = _read_varint(stream)
    else:
        length = 8 if wire_type == _FIXED64 else 4
    if length is None or stream.tell() + length > size:
        return None
    stream.seek(length, os.SEEK_CUR)
    return length


def _read_varint(stream: IO[bytes]) -> Optional[int]:
    """A protobuf base-128 varint (at most 10 bytes), or None if truncated or too long."""
    value = 0
    for shift in range(0, 70, 7):
        byte = stream.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


