"""Serving stored artifacts: streamed file responses with the sha256 as ETag,
``Digest``-style headers and HTTP range support for resumed downloads.

Users and admins download any model or dataset. An agent downloads only the
model, reference model and dataset of a run it currently holds a lease on;
anything else is a 404 problem (not 403), so an agent token cannot probe the
catalog, and an agent whose lease was lost mid-download fails that run rather
than stopping as it does on a refused token."""

from typing import Optional

from fastapi.responses import FileResponse

from edgefarm.shared.contract.enums import Role

from ..auth import Principal
from ..context import AppContext
from ..services import catalog
from ..services.catalog import StoredFile

NO_DEVICE = -1  # an agent token without a device holds no runs


def file_response(stored: StoredFile) -> FileResponse:
    return FileResponse(
        stored.path, media_type="application/octet-stream", filename=stored.filename,
        headers={"ETag": f'"{stored.sha256}"', "X-Content-SHA256": stored.sha256,
                 "Cache-Control": "private, max-age=31536000, immutable"},
    )


def agent_device(principal: Principal) -> Optional[int]:
    """The device whose runs bound what this caller may download; None: no bound."""
    if principal.role != Role.agent:
        return None
    return principal.device_id if principal.device_id is not None else NO_DEVICE


def model_download(ctx: AppContext, model_id: int, principal: Principal) -> FileResponse:
    return file_response(catalog.model_file(ctx, model_id, agent_device(principal)))


def dataset_download(ctx: AppContext, dataset_id: int, principal: Principal) -> FileResponse:
    return file_response(catalog.dataset_file(ctx, dataset_id, agent_device(principal)))
