"""``AppContext``: what every operation of the server needs (settings, database,
artifact store, the waker of long polls). ``create_app`` builds one per
application; the API's dependencies and the dashboard's pages hand it to the
services (``edgefarm.server.services``)."""

from dataclasses import dataclass, field

from .config import Settings
from .db import Database, Memo, Throttle, WorkingAgents
from .notify import Waker
from .storage import ArtifactStore


@dataclass
class AppContext:
    settings: Settings
    db: Database
    store: ArtifactStore
    waker: Waker
    last_seen: Throttle = field(default_factory=Throttle)  # devices' last_seen_at writes
    lease_parts: Memo = field(default_factory=Memo)  # what a lease says of its job and model
    working_agents: WorkingAgents = field(default_factory=WorkingAgents)  # whose last poll got work

    def base_url(self, request) -> str:
        """The URL put into download links and permalinks: the configured public URL,
        else the base URL of ``request`` (a Starlette request)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")
