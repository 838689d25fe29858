"""Serving stored artifacts: streamed file responses with the sha256 as ETag,
``Digest``-style headers and HTTP range support for resumed downloads."""

from fastapi.responses import FileResponse

from ..services.catalog import StoredFile


def file_response(stored: StoredFile) -> FileResponse:
    return FileResponse(
        stored.path, media_type="application/octet-stream", filename=stored.filename,
        headers={"ETag": f'"{stored.sha256}"', "X-Content-SHA256": stored.sha256,
                 "Cache-Control": "private, max-age=31536000, immutable"},
    )
