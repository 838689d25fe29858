"""Serving stored artifacts: streamed file responses with the sha256 as ETag,
``Digest``-style headers and HTTP range support for resumed downloads."""

from fastapi.responses import FileResponse

from ..context import AppContext
from ..problems import ProblemException


def artifact_response(ctx: AppContext, sha256: str, filename: str) -> FileResponse:
    path = ctx.store.local_path(sha256)
    if path is None:
        raise ProblemException(
            410, "Artifact missing",
            f"the stored file {sha256} is missing from the artifact store", kind="artifact-missing",
        )
    return FileResponse(
        path, media_type="application/octet-stream", filename=filename,
        headers={"ETag": f'"{sha256}"', "X-Content-SHA256": sha256,
                 "Cache-Control": "private, max-age=31536000, immutable"},
    )
