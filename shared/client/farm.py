"""``FarmClient``: the REST API as typed Python calls for users and admins, one
method per endpoint that the ``edgefarm`` CLI, ``edgefarm sweep`` and the main job
use, every answer parsed into the ``edgefarm.shared.contract.schemas`` models and
every failure raised as a sorted ``FarmError``.
"""

from __future__ import annotations

import json
from typing import IO, Any, Dict, List, Optional, Tuple, Union
from urllib.parse import quote

import httpx

from edgefarm.shared.contract.schemas import (
    CompareOut,
    DatasetOut,
    DeviceOut,
    JobOut,
    LayerTableOut,
    ModelOut,
    ResultOut,
    ResultVersus,
    TokenOut,
)
from edgefarm.shared.contract.watch import (
    BaselineOut,
    DeliveryOut,
    FamilyThresholds,
    HistoryOut,
    RegressionOut,
    WebhookOut,
)

from .http import PAGE_SIZE, ApiClient, Timeout
from .waiting import wait_for_job

#: Uploads may take long to validate on the server (a big dataset archive).
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class FarmClient(ApiClient):
    """A user's or an admin's session on one server (``url`` without ``/api/v1``)."""

    def __init__(self, url: str, token: Optional[str] = None, *, timeout: Timeout = DEFAULT_TIMEOUT,
                 transport: Optional[httpx.BaseTransport] = None, user_agent: str = "edgefarm-client"):
        super().__init__(url, token, user_agent=user_agent, timeout=timeout, transport=transport)

    # ------------------------------------------------------------ tokens (admin)

    def create_token(self, role: str, name: Optional[str] = None) -> TokenOut:
        """A new token; its secret is in ``token``, shown this once."""
        body = {"role": role, "name": name} if name else {"role": role}
        return self._parse(self._request("POST", "/tokens", json=body), TokenOut)

    def list_tokens(self) -> List[TokenOut]:
        return self._parse_list(self._request("GET", "/tokens"), TokenOut)

    # ------------------------------------------------------------ models

    def push_model(self, stream: IO[bytes], filename: str, meta: Dict[str, Any]) -> Tuple[ModelOut, bool]:
        """Upload a model file (streamed from ``stream``) with its ``ModelMeta``; returns
        the model and whether it is new (201) rather than already stored (200)."""
        response = self._request(
            "POST", "/models", files={"file": (filename, stream, "application/octet-stream")},
            data={"meta": json.dumps(meta)}, timeout=UPLOAD_TIMEOUT,
        )
        return self._parse(response, ModelOut), response.status_code == 201

    def list_models(self, family: Optional[str] = None) -> List[ModelOut]:
        return self._parse_all("/models", ModelOut, {"family": family} if family else {})

    def get_model(self, ref: Union[int, str]) -> ModelOut:
        """A model by id, name or sha256 (or a prefix of 8 hex digits or more)."""
        return self._parse(self._request("GET", f"/models/{_segment(ref)}"), ModelOut)

    def delete_model(self, model_id: int) -> ModelOut:
        return self._parse(self._request("DELETE", f"/models/{model_id}"), ModelOut)

    # ------------------------------------------------------------ datasets

    def push_dataset(self, stream: IO[bytes], filename: str, fields: Dict[str, str]) -> DatasetOut:
        """Upload a dataset archive (streamed) with its ``name``, ``layout`` and ``split``."""
        response = self._request(
            "POST", "/datasets", files={"file": (filename, stream, "application/octet-stream")},
            data=fields, timeout=UPLOAD_TIMEOUT,
        )
        return self._parse(response, DatasetOut)

    def register_dataset(self, body: Dict[str, Any]) -> DatasetOut:
        return self._parse(self._request("POST", "/datasets/register", json=body), DatasetOut)

    def list_datasets(self) -> List[DatasetOut]:
        return self._parse_all("/datasets", DatasetOut)

    def get_dataset(self, ref: Union[int, str]) -> DatasetOut:
        """A dataset by id or name."""
        return self._parse(self._request("GET", f"/datasets/{_segment(ref)}"), DatasetOut)

    # ------------------------------------------------------------ jobs

    def submit_job(self, body: Dict[str, Any]) -> JobOut:
        """Submit a ``JobCreate`` body; the job fans out into ``repeat`` runs per model and
        device, or with ``placement: "any"`` into ``repeat`` runs per model that any free
        matching device takes (their ``device_id`` is None until one does)."""
        return self._parse(self._request("POST", "/jobs", json=body), JobOut)

    def list_jobs(self, state: Optional[str] = None, limit: Optional[int] = None) -> List[JobOut]:
        """Jobs newest first, as summaries (run counts per state, no runs: ``get_job``
        has them); all of them, or the newest ``limit``."""
        return self._parse_all("/jobs", JobOut, {"state": state} if state else {}, most=limit)

    def get_job(self, job_id: int) -> JobOut:
        return self._parse(self._request("GET", f"/jobs/{job_id}"), JobOut)

    def cancel_job(self, job_id: int, reason: Optional[str] = None) -> JobOut:
        body = {"reason": reason} if reason else {}
        return self._parse(self._request("POST", f"/jobs/{job_id}/cancel", json=body), JobOut)

    def wait_for_job(self, job_id: int, timeout: Optional[float] = None,
                     **options: Any) -> Tuple[JobOut, bool]:
        """Poll until the job ends or ``timeout`` passes; returns the last state and
        whether it ended. ``options``: ``interval``, ``on_update``, ``on_retry``,
        ``max_failures``, ``clock``, ``sleep`` (see ``waiting.wait_for_job``)."""
        return wait_for_job(self, job_id, timeout, **options)

    # ------------------------------------------------------------ results

    def list_results(self, filters: Dict[str, Any]) -> List[ResultOut]:
        """Results matching ``filters`` (model, family, variant, device, platform, runtime,
        task, job), in id order, every page of them; None or empty values are left out."""
        return self._parse_all("/results", ResultOut, _clean(filters))

    def results_csv(self, filters: Dict[str, Any]) -> str:
        """The server's CSV export of the same results, every page of it joined under
        one header line."""
        params = dict(_clean(filters), format="csv", limit=PAGE_SIZE)
        pages = [response.text for response in self._pages("/results", params)]
        return pages[0] + "".join(page.split("\n", 1)[1] if "\n" in page else "" for page in pages[1:])

    def compare(self, family: str, platform: Optional[str] = None,
                runtime: Optional[str] = None) -> CompareOut:
        """The family's variants x devices, with deltas against the base model."""
        params = _clean({"family": family, "platform": platform, "runtime": runtime})
        return self._parse(self._request("GET", "/results/compare", params=params), CompareOut)

    def get_result(self, result_id: int) -> ResultOut:
        return self._parse(self._request("GET", f"/results/{result_id}"), ResultOut)

    def result_layers(self, result_id: int) -> LayerTableOut:
        """The result's layer table: per-layer time and drift."""
        return self._parse(self._request("GET", f"/results/{result_id}/layers"), LayerTableOut)

    def result_layers_csv(self, result_id: int) -> str:
        """The server's CSV export of the result's layer table."""
        return self._request("GET", f"/results/{result_id}/layers", params={"format": "csv"}).text
    def versus(self, base_id: int, result_id: int) -> ResultVersus:
        """Result ``result_id`` against ``base_id``: latency and accuracy verdicts."""
        return self._parse(self._request("GET", f"/results/{base_id}/versus/{result_id}"), ResultVersus)

    # ------------------------------------------------------------ devices

    def list_devices(self) -> List[DeviceOut]:
        return self._parse_all("/devices", DeviceOut)

    def patch_device(self, device_id: int, body: Dict[str, Any]) -> DeviceOut:
        """Change a device (admin): ``enabled``, ``draining``, ``labels``."""
        return self._parse(self._request("PATCH", f"/devices/{device_id}", json=body), DeviceOut)

    # ------------------------------------------------------------ regression watch

    def set_baseline(self, result_id: Optional[int] = None,
                     series: Optional[Dict[str, Any]] = None) -> BaselineOut:
        """Hold a series to a result, or (``series``) to the series' newest result."""
        body = {"result_id": result_id} if result_id is not None else {"series": series}
        return self._parse(self._request("POST", "/baselines", json=body), BaselineOut)

    def list_baselines(self, family: Optional[str] = None) -> List[BaselineOut]:
        return self._parse_all("/baselines", BaselineOut, _clean({"family": family}))

    def history(self, family: str, variant: str, device: int, runtime: str,
                limit: Optional[int] = None) -> HistoryOut:
        """A series' results over time, oldest first."""
        params = _clean({"family": family, "variant": variant, "device": device, "runtime": runtime,
                         "limit": limit})
        return self._parse(self._request("GET", "/history", params=params), HistoryOut)

    def list_regressions(self, job: Optional[int] = None, result: Optional[int] = None,
                         family: Optional[str] = None) -> List[RegressionOut]:
        """Regressions found, newest first, narrowed by job, result or family."""
        params = _clean({"job": job, "result": result, "family": family})
        return self._parse_all("/regressions", RegressionOut, params)

    def set_thresholds(self, family: str, thresholds: Dict[str, Any]) -> FamilyThresholds:
        """A family's own regression thresholds (admin)."""
        return self._parse(self._request("PUT", f"/thresholds/{_segment(family)}", json=thresholds),
                           FamilyThresholds)

    def create_webhook(self, url: str, events: List[str], description: Optional[str] = None) -> WebhookOut:
        """Register a webhook (admin); the answer's ``secret`` is shown this once."""
        body = _clean({"url": url, "events": events, "description": description})
        return self._parse(self._request("POST", "/webhooks", json=body), WebhookOut)

    def list_webhooks(self) -> List[WebhookOut]:
        return self._parse_all("/webhooks", WebhookOut)

    def list_deliveries(self, webhook_id: int, state: Optional[str] = None) -> List[DeliveryOut]:
        return self._parse_all(f"/webhooks/{webhook_id}/deliveries", DeliveryOut, _clean({"state": state}))


def _clean(params: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None and value != ""}


def _segment(ref: Union[int, str]) -> str:
    """A reference as one URL path segment (names may hold '/' or spaces)."""
    return quote(str(ref).strip(), safe="")
