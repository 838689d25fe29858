"""The errors the services raise when they refuse an operation. Each says what
went wrong for a person (``title``, ``detail``) and names its kind with a
stable ``code`` (None: the title's words, hyphenated). They carry no HTTP:
``edgefarm.server.problems`` answers each class with its status as
problem+json, and the dashboard shows the same as an HTML error page."""

from typing import Any, Optional


class DomainError(Exception):
    """An operation the farm refuses."""

    code: Optional[str] = None

    def __init__(self, title: str, detail: str, *, code: Optional[str] = None):
        super().__init__(detail)
        self.title, self.detail = title, detail
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """Nothing answers to the reference given (an id, a name, a sha256)."""

    code = "not-found"

    def __init__(self, what: str, ref: Any):
        super().__init__("Not found", f"no {what} {ref!r}")


class Conflict(DomainError):
    """The operation does not fit what is stored (a name taken, a job ended, a model in use)."""

    code = "conflict"


class LeaseNotCurrent(Conflict):
    """An agent names a lease that is no longer its run's current lease."""

    code = "lease-conflict"

    def __init__(self, reason: str):
        super().__init__(
            "Lease not current",
            f"{reason}; the run was requeued or finished and this agent must drop it",
        )


class Invalid(DomainError):
    """The request is well formed but asks for something that cannot be (a dataset
    that does not fit the task, a reference its runtime cannot read, ...)."""


class Unauthorized(DomainError):
    """The caller's credential is spent (a used enrollment token)."""


class Forbidden(DomainError):
    """The caller may not do this."""

    code = "forbidden"

    def __init__(self, detail: str):
        super().__init__("Forbidden", detail)


class Gone(DomainError):
    """A file the database names is missing from the artifact store."""


class InsufficientStorage(DomainError):
    """The server has no disk space left to store what was sent; nothing was kept."""

    code = "insufficient-storage"


class UnsupportedMedia(DomainError):
    """An upload is not a kind of file the farm reads."""


class ProtocolMismatch(DomainError):
    """The agent speaks another version of the agent protocol."""

    code = "protocol-mismatch"
