"""An opened dataset: one extracted dataset folder, scanned and planned once, then read
as often as a run needs.

This module owns ``open_dataset`` and ``Dataset``: the samples in evaluation order,
the class names and count, the summary of the single scan, and the decoded samples
(the first ``limit`` ones, or those at chosen positions). A run hands the same
``Dataset`` to its latency inputs, its evaluation and its output agreement, so the
folder is walked once per run.

``sample_inputs`` gives samples spread evenly over a dataset (``spread``), decoded and
pre-processed exactly as the agent's evaluation feeds them: the tools' calibration
and fine-tuning data.

Needs numpy and Pillow (through ``edgefarm.shared.datasets.readers``): imported by
module path, like ``readers`` and ``preprocess``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np

from .catalog import ArchiveSummary, plan_directory
from .layouts.plan import Sample
from .preprocess import InputSpec, preprocess_image
from .readers import DecodedSample, decode_samples


def spread(count: int, wanted: int) -> List[int]:
    """``wanted`` positions spread evenly over ``count`` (all when fewer)."""
    if wanted >= count:
        return list(range(count))
    return sorted({int(i * count / wanted) for i in range(wanted)})


@dataclass(frozen=True)
class Dataset:
    """An extracted dataset, planned once: ``samples`` carry local paths and labels."""

    root: str
    layout: str
    split: Optional[str]
    summary: ArchiveSummary
    samples: List[Sample]

    @property
    def classes(self) -> Optional[List[str]]:
        return self.summary.classes

    @property
    def num_classes(self) -> Optional[int]:
        return self.summary.num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def decoded(self, limit: Optional[int] = None) -> Iterator[DecodedSample]:
        """The first ``limit`` samples (all when None), decoded lazily, in evaluation order."""
        return decode_samples(self.samples if limit is None else self.samples[:limit], self.layout)

    def decoded_at(self, positions: Sequence[int]) -> Iterator[DecodedSample]:
        """The samples at ``positions``, decoded lazily in that order."""
        return decode_samples([self.samples[index] for index in positions], self.layout)

    def spread(self, count: Optional[int]) -> List[int]:
        """``count`` positions spread evenly over the samples (all when None)."""
        return spread(len(self.samples), len(self.samples) if count is None else count)


def open_dataset(root_dir, layout: str, split: Optional[str] = None) -> Dataset:
    """The extracted ``layout`` dataset in ``root_dir``, scanned and planned once.
    Raises DatasetError as ``list_samples`` does."""
    summary, samples = plan_directory(root_dir, layout, split)
    return Dataset(os.fspath(root_dir), layout, split, summary, samples)


class SampleInputs(NamedTuple):
    """Input tensors of some samples, and their labels (None where a layout has none)."""

    tensors: List[np.ndarray]
    labels: List[Optional[int]]


def sample_inputs(dataset: Dataset, count: Optional[int], spec: InputSpec,
                  pre: Any = None) -> SampleInputs:
    """``count`` samples of ``dataset`` (all when None), spread evenly over it, decoded
    and pre-processed for ``spec`` as the agent's evaluation does."""
    tensors, labels = [], []
    for sample in dataset.decoded_at(dataset.spread(count)):
        tensors.append(preprocess_image(sample.image, spec, pre))
        labels.append(sample.label)
    return SampleInputs(tensors, labels)
