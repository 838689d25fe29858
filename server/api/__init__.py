"""REST resources under ``/api/v1``, one router per module."""

from fastapi import APIRouter

from . import agents, datasets, devices, info, jobs, models, results, runs, tokens, watch, webhooks


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    for module in (info, tokens, models, datasets, devices, agents, jobs, runs, results, watch, webhooks):
        router.include_router(module.router)
    return router
