"""Output-agreement references: which model each run of a job compares its
outputs with, resolved once at submission (``RunSettings.reference``).

* ``"auto"``: the reference runs on ``tflite`` CPU; for a variant (quantized,
  pruned, or with a parent) it is the family's base model (the root of its
  ``parent_id`` chain, else the family's unquantized, unpruned original), else
  the model itself. A model with no ``.tflite`` candidate gets no reference and
  the job carries a warning.
* a ``ReferenceSpec``: its ``model`` (id, name or sha256) for every job model,
  or each job model itself when ``model`` is null; the reference runtime must
  read the model's format, else the submission is refused (``Invalid``).

The result is the spec with ``resolved`` filled (job model id -> reference model
id), stored in the job's settings; ``reference_model`` reads it back when a run
is leased, and the lease carries that model. Nothing here commits.
"""

from typing import Dict, List, Optional, Sequence, Tuple

from sqlalchemy import select

from edgefarm.shared.contract.rules import runtime_formats
from edgefarm.shared.contract.schemas import ReferenceSpec, RunSettings

from ..tables import Model
from .errors import Invalid
from .lookups import find_model

_MAX_ANCESTORS = 20


def is_variant(model: Model) -> bool:
    return model.quantization != "none" or bool(model.sparsity) or model.parent_id is not None


def _ancestors(session, model: Model) -> List[Model]:
    """Parent, grandparent, ... nearest first (cycles and deep chains are cut)."""
    chain, seen, current = [], {model.id}, model
    while current.parent_id is not None and len(chain) < _MAX_ANCESTORS:
        parent = session.get(Model, current.parent_id)
        if parent is None or parent.id in seen:
            break
        chain.append(parent)
        seen.add(parent.id)
        current = parent
    return chain


def first_original(models: Sequence[Model]) -> Optional[Model]:
    """The first of ``models`` that is no variant: no parent, not quantized, not pruned."""
    return next((model for model in models if not is_variant(model)), None)


def family_base(session, model: Model) -> Optional[Model]:
    """The family's original other than ``model`` (the oldest)."""
    query = select(Model).where(Model.family == model.family, Model.id != model.id).order_by(Model.id)
    return first_original(list(session.scalars(query)))


def auto_candidates(session, model: Model) -> List[Model]:
    """Reference candidates for ``model`` in order of preference."""
    if not is_variant(model):
        return [model]
    ancestors = _ancestors(session, model)
    root = [ancestors[-1]] if ancestors else []
    base = family_base(session, model)
    ordered = root + ([base] if base is not None else []) + ancestors + [model]
    unique: Dict[int, Model] = {}
    for candidate in ordered:
        unique.setdefault(candidate.id, candidate)
    return list(unique.values())


def _auto(session, spec: ReferenceSpec, models: Sequence[Model]) -> Tuple[ReferenceSpec, List[str]]:
    readable = runtime_formats(spec.runtime)
    warnings = []
    for model in models:
        found = next((c for c in auto_candidates(session, model) if c.format in readable), None)
        if found is None:
            warnings.append(f"model {model.id} ({model.name}) has no {spec.runtime} reference "
                            f"(needs a {' or '.join(readable)} base); its runs report no agreement")
            continue
        spec.resolved[str(model.id)] = found.id
    return spec, warnings


def resolve_reference(session, reference, models: Sequence[Model]) -> Tuple[Optional[dict], List[str]]:
    """(the reference spec to store in the job's settings, warnings)."""
    if reference is None:
        return None, []
    if reference == "auto":
        spec, warnings = _auto(session, ReferenceSpec(), models)
        return spec.model_dump(mode="json"), warnings
    spec = reference.model_copy(deep=True)
    spec.resolved = {}
    explicit = find_model(session, spec.model) if spec.model else None
    readable = runtime_formats(spec.runtime)
    for model in models:
        target = explicit or model
        if target.format not in readable:
            raise Invalid(
                "Reference does not fit its runtime",
                f"reference model {target.id} ({target.name}) is a {target.format} file, which "
                f"runtime {spec.runtime} cannot read (it reads {', '.join(readable) or 'nothing'})",
            )
        spec.resolved[str(model.id)] = target.id
    return spec.model_dump(mode="json"), []


def reference_model_id(settings: RunSettings, model_id: int) -> Optional[int]:
    """The id of the model a run of ``model_id`` compares its outputs with, if any."""
    if not isinstance(settings.reference, ReferenceSpec):
        return None
    return settings.reference.resolved.get(str(model_id))


def reference_model(session, settings: RunSettings, model_id: int) -> Optional[Model]:
    """The model a run of ``model_id`` compares its outputs with, when its job names a reference."""
    reference_id = reference_model_id(settings, model_id)
    return session.get(Model, reference_id) if reference_id is not None else None
