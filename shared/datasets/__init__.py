"""Evaluation datasets: which layouts EdgeFarm understands, archive safety, and
how samples are read and turned into input tensors.

Used by the server to validate uploads, by the agent to evaluate and by the tools
to calibrate. The names below are pure standard library (the server imports them);
``readers`` (decoding) and ``preprocess`` (input tensors) need numpy and Pillow and
are imported by module path.
"""

from .layouts import (
    CIFAR_RECORD_BYTES,
    LAYOUTS,
    ArchiveSummary,
    DatasetError,
    Sample,
    list_samples,
    pack_directory,
    safe_extract,
    validate_archive,
    validate_directory,
)

__all__ = ["CIFAR_RECORD_BYTES", "LAYOUTS", "ArchiveSummary", "DatasetError", "Sample",
           "list_samples", "pack_directory", "safe_extract", "validate_archive",
           "validate_directory"]
