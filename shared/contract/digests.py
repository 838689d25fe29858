"""Content addresses: models and datasets are named on the wire by the sha256 of
their bytes (``ModelOut.sha256``, the ``ETag`` of a download, the agent's cache)."""

import hashlib
from os import PathLike
from typing import Union

_CHUNK = 1 << 20


def sha256_file(path: Union[str, "PathLike[str]"]) -> str:
    """The hex sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
