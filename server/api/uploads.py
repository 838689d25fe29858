"""Streaming multipart uploads: the file part goes straight into the artifact
store (hashed, size-limited) while the small form fields are collected.

Starlette's own form parser spools the whole file to a temporary file before a
handler runs, so a limit could only be checked after the disk filled up; this
parser stops at the first byte over the limit.
"""

from dataclasses import dataclass, field
from typing import Dict, Optional

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from edgefarm.shared.contract.ids import MAX_DB_INT, parse_id

from ..problems import ProblemException
from ..storage import ArtifactStore, ArtifactTooLarge, ArtifactWriter

MAX_FIELD_BYTES = 1024 * 1024
#: A file name may name the model it holds, and names are at most 200 characters.
MAX_FILENAME_CHARS = 200


@dataclass
class Upload:
    fields: Dict[str, str] = field(default_factory=dict)
    writer: Optional[ArtifactWriter] = None
    filename: Optional[str] = None


class _PartCollector:
    """Callbacks for python-multipart: routes each part to a field buffer or the store."""

    def __init__(self, store: ArtifactStore, file_field: str, max_bytes: int):
        self.store, self.file_field, self.max_bytes = store, file_field, max_bytes
        self.upload = Upload()
        self._headers: Dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._name: Optional[str] = None
        self._buffer = bytearray()
        self._is_file = False

    def on_part_begin(self) -> None:
        self._headers, self._buffer, self._name, self._is_file = {}, bytearray(), None, False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if self._name == self.file_field:
            if self.upload.writer is not None:
                raise ProblemException(400, "Duplicate file", f"send one '{self.file_field}' part")
            self._is_file = True
            self.upload.filename = filename.decode("utf-8", "replace") if filename else None
            self.upload.writer = self.store.writer(self.max_bytes)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.writer.write(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > MAX_FIELD_BYTES:
            raise ProblemException(413, "Form field too large", f"field {self._name!r} is over 1 MiB")

    def on_part_end(self) -> None:
        if not self._is_file and self._name:
            self.upload.fields[self._name] = self._buffer.decode("utf-8", "replace")

    def callbacks(self) -> dict:
        names = ("on_part_begin", "on_header_field", "on_header_value", "on_header_end",
                 "on_headers_finished", "on_part_data", "on_part_end")
        return {name: getattr(self, name) for name in names}


async def receive_upload(
    request: Request, store: ArtifactStore, file_field: str, max_bytes: int
) -> Upload:
    """Parse a multipart/form-data body; the caller commits or aborts ``upload.writer``."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise ProblemException(
            415, "Unsupported media type",
            f"send the file as multipart/form-data with a '{file_field}' part",
        )
    declared = request.headers.get("content-length")
    if (parse_id(declared or "", MAX_DB_INT) or 0) > max_bytes + MAX_FIELD_BYTES:
        raise ProblemException(413, "Upload too large", f"the limit is {max_bytes} bytes")
    collector = _PartCollector(store, file_field, max_bytes)
    parser = MultipartParser(params[b"boundary"], collector.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ArtifactTooLarge as exc:
        _abort(collector.upload)
        raise ProblemException(413, "Upload too large", str(exc)) from exc
    except ProblemException:
        _abort(collector.upload)
        raise
    except Exception as exc:  # malformed multipart body
        _abort(collector.upload)
        raise ProblemException(400, "Malformed upload", f"the multipart body is invalid: {exc}")
    if collector.upload.writer is None:
        raise ProblemException(422, "Missing file", f"the form has no '{file_field}' file part")
    texts = [*collector.upload.fields.values(), collector.upload.filename or ""]
    if any("\x00" in text for text in texts):
        _abort(collector.upload)
        raise ProblemException(422, "Invalid form field",
                               "form fields and file names must not hold NUL characters")
    if len(collector.upload.filename or "") > MAX_FILENAME_CHARS:
        _abort(collector.upload)
        raise ProblemException(422, "File name too long",
                               f"the file name is longer than {MAX_FILENAME_CHARS} characters")
    return collector.upload


def _abort(upload: Upload) -> None:
    if upload.writer is not None:
        upload.writer.abort()
