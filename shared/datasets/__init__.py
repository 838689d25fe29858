"""Evaluation datasets: which layouts EdgeFarm understands, archive safety, and
how samples are read and turned into input tensors.

Used by the server to validate uploads, by the agent to evaluate and by the tools
to calibrate. The modules, each with one concern:

* ``archives``: reading zip/tar archives and folders safely (limits, names, links),
  ``safe_extract`` and the deterministic ``pack_directory``;
* ``catalog``: the layout names and their planners' registry, ``validate_archive``,
  ``validate_directory`` and ``list_samples``;
* ``layouts``: one module per layout (voc-seg, imagenet-val, imagefolder, mnist-idx,
  cifar10-bin);
* ``readers`` (decoding), ``preprocess`` (input tensors) and ``dataset``
  (``open_dataset``: a dataset folder scanned once for a whole run; ``sample_inputs``:
  samples decoded and pre-processed as the agent evaluates them).

The names below are pure standard library (the server imports them); ``readers``,
``dataset`` and ``preprocess`` need numpy and Pillow and are imported by module path.
"""

from .archives import pack_directory, safe_extract
from .catalog import LAYOUTS, ArchiveSummary, list_samples, validate_archive, validate_directory
from .errors import DatasetError
from .layouts.cifar10_bin import CIFAR_RECORD_BYTES
from .layouts.plan import Sample

__all__ = ["CIFAR_RECORD_BYTES", "LAYOUTS", "ArchiveSummary", "DatasetError", "Sample",
           "list_samples", "pack_directory", "safe_extract", "validate_archive",
           "validate_directory"]
