"""The REST API as Python calls: one method per ``/api/v1`` endpoint the CLI uses.

Errors are sorted here, once: an answer with status 4xx becomes a ``CliError``
with exit code 2 carrying the problem's title and detail; 5xx answers and
network failures become exit code 1 with a message that names the server URL.
Responses are parsed into the ``edgefarm.shared.contract.schemas`` models.
"""

from __future__ import annotations

import json
from typing import IO, Any, Dict, List, Optional, Tuple, Type, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from edgefarm.shared.contract.schemas import CompareOut, DatasetOut, DeviceOut, JobOut, ModelOut, ResultOut

from . import __version__
from .errors import EXIT_FAILURE, EXIT_USAGE, CliError

API = "/api/v1"
T = TypeVar("T", bound=BaseModel)

#: Uploads may take long to validate on the server (a big dataset archive).
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def problem_message(response: httpx.Response) -> str:
    """``Title: detail`` from an RFC 9457 body, or the status and raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("title"):
        title, detail = str(body["title"]), str(body.get("detail") or "")
        return f"{title}: {detail}" if detail else title
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    reason = response.reason_phrase or "error"
    return f"HTTP {response.status_code} {reason}" + (f": {text}" if text else "")


class Client:
    """An ``httpx.Client`` on one server with one bearer token."""

    def __init__(self, url: str, token: str, transport: Optional[httpx.BaseTransport] = None):
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url + API, transport=transport, timeout=DEFAULT_TIMEOUT,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"edgefarm-cli/{__version__}"},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise CliError(f"the EdgeFarm server at {self.url} did not answer in time ({exc})",
                           EXIT_FAILURE)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the EdgeFarm server at {self.url}: {exc}", EXIT_FAILURE)
        if response.status_code >= 500:
            raise CliError(f"server error at {self.url}: {problem_message(response)}", EXIT_FAILURE)
        if response.status_code >= 400:
            raise CliError(problem_message(response), EXIT_USAGE)
        return response

    def _parse(self, response: httpx.Response, model: Type[T]) -> T:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise CliError(f"unexpected answer from {self.url}{response.request.url.path}: {exc}",
                           EXIT_FAILURE)

    def _parse_list(self, response: httpx.Response, model: Type[T]) -> List[T]:
        data = response.json()
        if not isinstance(data, list):
            raise CliError(f"unexpected answer from {self.url}: expected a list", EXIT_FAILURE)
        return [self._parse_item(item, model) for item in data]

    def _parse_item(self, item: Any, model: Type[T]) -> T:
        try:
            return model.model_validate(item)
        except ValidationError as exc:
            raise CliError(f"unexpected answer from {self.url}: {exc}", EXIT_FAILURE)

    # ------------------------------------------------------------ models

    def push_model(self, stream: IO[bytes], filename: str, meta: Dict[str, Any]) -> Tuple[ModelOut, bool]:
        """Upload a model file; returns the model and whether it is new (201) or
        was already stored (200)."""
        response = self.request(
            "POST", "/models", files={"file": (filename, stream, "application/octet-stream")},
            data={"meta": json.dumps(meta)}, timeout=UPLOAD_TIMEOUT,
        )
        return self._parse(response, ModelOut), response.status_code == 201

    def list_models(self, family: Optional[str] = None) -> List[ModelOut]:
        params = {"family": family} if family else {}
        return self._parse_list(self.request("GET", "/models", params=params), ModelOut)

    def get_model(self, ref: str) -> ModelOut:
        return self._parse(self.request("GET", f"/models/{_segment(ref)}"), ModelOut)

    def delete_model(self, model_id: int) -> ModelOut:
        return self._parse(self.request("DELETE", f"/models/{model_id}"), ModelOut)

    # ------------------------------------------------------------ datasets

    def push_dataset(self, stream: IO[bytes], filename: str, fields: Dict[str, str]) -> DatasetOut:
        response = self.request(
            "POST", "/datasets", files={"file": (filename, stream, "application/octet-stream")},
            data=fields, timeout=UPLOAD_TIMEOUT,
        )
        return self._parse(response, DatasetOut)

    def register_dataset(self, body: Dict[str, Any]) -> DatasetOut:
        return self._parse(self.request("POST", "/datasets/register", json=body), DatasetOut)

    def list_datasets(self) -> List[DatasetOut]:
        return self._parse_list(self.request("GET", "/datasets"), DatasetOut)

    # ------------------------------------------------------------ jobs

    def submit_job(self, body: Dict[str, Any]) -> JobOut:
        return self._parse(self.request("POST", "/jobs", json=body), JobOut)

    def list_jobs(self, state: Optional[str] = None) -> List[JobOut]:
        params = {"state": state} if state else {}
        return self._parse_list(self.request("GET", "/jobs", params=params), JobOut)

    def get_job(self, job_id: int) -> JobOut:
        return self._parse(self.request("GET", f"/jobs/{job_id}"), JobOut)

    def cancel_job(self, job_id: int, reason: Optional[str] = None) -> JobOut:
        body = {"reason": reason} if reason else {}
        return self._parse(self.request("POST", f"/jobs/{job_id}/cancel", json=body), JobOut)

    # ------------------------------------------------------------ results

    def list_results(self, filters: Dict[str, Any]) -> List[ResultOut]:
        response = self.request("GET", "/results", params=_clean(filters))
        return self._parse_list(response, ResultOut)

    def results_csv(self, filters: Dict[str, Any]) -> str:
        params = dict(_clean(filters), format="csv")
        return self.request("GET", "/results", params=params).text

    def compare(self, family: str, platform: Optional[str] = None,
                runtime: Optional[str] = None) -> CompareOut:
        params = _clean({"family": family, "platform": platform, "runtime": runtime})
        return self._parse(self.request("GET", "/results/compare", params=params), CompareOut)

    # ------------------------------------------------------------ devices

    def list_devices(self) -> List[DeviceOut]:
        return self._parse_list(self.request("GET", "/devices"), DeviceOut)

    def patch_device(self, device_id: int, body: Dict[str, Any]) -> DeviceOut:
        return self._parse(self.request("PATCH", f"/devices/{device_id}", json=body), DeviceOut)


def _clean(params: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None and value != ""}


def _segment(ref: str) -> str:
    """A reference as one URL path segment (names may hold '/' or spaces)."""
    return quote(ref.strip(), safe="")
