"""Device selectors: which devices a job's runs go to.

A selector is written ``all``, ``platform=pc``, ``label=NAME`` or ``id=ID``;
several terms are joined by commas. Terms with the same key are alternatives
(``id=1,id=2`` means device 1 or 2); terms with different keys must all hold
(``platform=rpi3,label=lab2`` means Raspberry Pis labelled lab2).
"""

from typing import Dict, Iterable, List, Optional

from pydantic import BaseModel, Field

from .ids import parse_id

SELECTOR_KEYS = ("platform", "label", "id")


class SelectorError(ValueError):
    """A selector string that cannot be understood."""


class DeviceSelector(BaseModel):
    """The parsed form of a selector string. Empty lists mean 'any'."""

    ids: List[int] = Field(default_factory=list)
    platforms: List[str] = Field(default_factory=list)
    labels: List[str] = Field(default_factory=list)

    @property
    def is_all(self) -> bool:
        return not (self.ids or self.platforms or self.labels)

    def matches(self, device_id: int, platform: str, labels: Iterable[str]) -> bool:
        if self.ids and device_id not in self.ids:
            return False
        if self.platforms and platform not in self.platforms:
            return False
        if self.labels and not set(self.labels) & set(labels):
            return False
        return True

    def __str__(self) -> str:
        return format_selector(self)


def parse_selector(text: str) -> DeviceSelector:
    """Parse ``all`` / ``platform=X`` / ``label=X`` / ``id=N`` terms joined by commas."""
    text = (text or "").strip()
    if not text:
        raise SelectorError("empty device selector: use 'all', 'platform=pc', 'label=NAME' or 'id=N'")
    if text == "all":
        return DeviceSelector()
    found: Dict[str, List[str]] = {key: [] for key in SELECTOR_KEYS}
    for term in text.split(","):
        key, value = _split_term(term.strip())
        if value not in found[key]:
            found[key].append(value)
    return DeviceSelector(ids=_parse_ids(found["id"]), platforms=found["platform"], labels=found["label"])


def _split_term(term: str):
    if term == "all":
        raise SelectorError("'all' cannot be combined with other selector terms")
    key, sep, value = term.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not value:
        raise SelectorError(
            f"device selector term {term!r} is not KEY=VALUE; "
            "use 'all', 'platform=pc', 'label=NAME' or 'id=N', joined by commas"
        )
    if key not in SELECTOR_KEYS:
        raise SelectorError(
            f"unknown device selector key {key!r}; known keys: {', '.join(SELECTOR_KEYS)}"
        )
    return key, value


def _parse_ids(values: List[str]) -> List[int]:
    ids = []
    for value in values:
        device_id = parse_id(value)
        if device_id is None:
            raise SelectorError(f"device id must be a whole number from 1 to 2^31-1, got {value!r}")
        ids.append(device_id)
    return ids


def format_selector(selector: Optional[DeviceSelector]) -> str:
    """The canonical string form (inverse of parse_selector)."""
    if selector is None or selector.is_all:
        return "all"
    terms = [f"id={i}" for i in selector.ids]
    terms += [f"platform={p}" for p in selector.platforms]
    terms += [f"label={label}" for label in selector.labels]
    return ",".join(terms)
