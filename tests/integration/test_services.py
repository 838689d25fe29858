"""The server's service layer (SQLite and PostgreSQL): the operations the API
and the dashboard share, called in-process on a real database, and their
refusals, which are domain errors that the API answers as problem+json (one
status and type per error class) and the dashboard as an HTML error page."""

import pytest

from edgefarm.server.app import build_context
from edgefarm.server.auth import Principal
from edgefarm.server.config import Settings
from edgefarm.server.problems import domain_status
from edgefarm.server.services import catalog, jobs, leases, results, tokens
from edgefarm.server.services.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    LeaseNotCurrent,
    NotFound,
    ProtocolMismatch,
    UnsupportedMedia,
)
from edgefarm.shared.contract import PROTOCOL_VERSION
from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.schemas import (
    EnrollRequest,
    JobCreate,
    ModelMeta,
    RunHeartbeat,
    RunReport,
    TokenCreate,
)
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import capabilities, sample_result

BASE_URL = "http://farm.test"


@pytest.fixture
def ctx(database_url, tmp_path):
    context = build_context(Settings(data_dir=tmp_path / "data", database_url=database_url,
                                     migrate_on_start=True))
    yield context
    context.db.dispose()


@pytest.fixture
def user(ctx) -> int:
    """The id of a user token, the submitter of the tests' jobs."""
    return tokens.create_token(ctx, TokenCreate(role=Role.user)).id


def add_model(ctx, content: bytes, **meta):
    writer = ctx.store.writer()
    writer.write(content)
    model, created = catalog.add_model(ctx, writer, ModelMeta(**meta), "upload.tflite", BASE_URL)
    return model


def enroll(ctx, name: str = "pc-1", **caps):
    token = tokens.create_token(ctx, TokenCreate(role=Role.enroll))
    body = EnrollRequest(name=name, capabilities=capabilities(**caps), protocol_version=PROTOCOL_VERSION)
    return leases.enroll(ctx, Principal(token.id, Role.enroll), body)


def refusal(error: DomainError):
    """What the API answers for ``error``: (status, problem type code, title, detail)."""
    return domain_status(error), error.code, error.title, error.detail


def test_a_lease_carries_typed_settings_and_the_resolved_reference(ctx, user):
    base = add_model(ctx, tiny_tflite(seed=0), name="net-fp32", family="net", task="classification")
    int8 = add_model(ctx, tiny_tflite(seed=1), name="net-int8", family="net",
                     variant={"quantization": "int8"})
    device = enroll(ctx).device_id
    job = jobs.submit(ctx, JobCreate(models=[int8.name], settings={"reference": "auto", "threads": 2}),
                      created_by=user)
    assert job.settings.reference.resolved == {str(int8.id): base.id}
    lease = leases.claim(ctx, device, BASE_URL)
    assert lease.run_id == job.runs[0].id and lease.settings.threads == 2
    assert lease.model.id == int8.id and lease.reference_model.id == base.id
    assert lease.model.download_url == f"{BASE_URL}/api/v1/models/{int8.id}/file"
    assert leases.claim(ctx, device, BASE_URL) is None

    plain = jobs.submit(ctx, JobCreate(models=[base.name]), created_by=user)
    second = leases.claim(ctx, device, BASE_URL)
    assert second.job_id == plain.id and second.reference_model is None

    with pytest.raises(LeaseNotCurrent) as stale:
        leases.renew(ctx, lease.run_id, device, RunHeartbeat(lease_id="not-the-lease"))
    assert refusal(stale.value)[:3] == (409, "lease-conflict", "Lease not current")
    report = RunReport(lease_id=lease.lease_id, state="succeeded", result=sample_result(top1=0.8))
    assert leases.report(ctx, lease.run_id, device, report).result_id is not None
    compare = results.compare_family(ctx, "net", BASE_URL)
    assert compare.base_model_id == base.id and [c.model_id for c in compare.cells] == [int8.id]


def test_refusals_are_domain_errors_with_one_status_each(ctx, user):
    model = add_model(ctx, tiny_tflite(seed=3), name="m")
    with pytest.raises(NotFound) as missing:
        jobs.get_job(ctx, 999)
    assert refusal(missing.value) == (404, "not-found", "Not found", "no job 999")
    with pytest.raises(Invalid) as nowhere:
        jobs.submit(ctx, JobCreate(models=["m"], devices="platform=rb5", require_device=True),
                    created_by=user)
    assert refusal(nowhere.value)[:3] == (422, "no-device", "No matching device")
    with pytest.raises(Invalid) as agent_role:
        tokens.create_token(ctx, TokenCreate(role=Role.agent))
    assert refusal(agent_role.value)[:3] == (422, None, "Invalid role")  # type from the title
    with pytest.raises(Forbidden) as not_enroll:
        leases.enroll(ctx, Principal(user, Role.user), EnrollRequest(
            name="x", capabilities=capabilities(), protocol_version=PROTOCOL_VERSION))
    assert refusal(not_enroll.value)[:2] == (403, "forbidden")
    with pytest.raises(ProtocolMismatch) as old_agent:
        leases.enroll(ctx, Principal(user, Role.admin), EnrollRequest(
            name="x", capabilities=capabilities(), protocol_version=PROTOCOL_VERSION + 1))
    assert refusal(old_agent.value)[:2] == (426, "protocol-mismatch")

    job = jobs.submit(ctx, JobCreate(models=["m"], devices="platform=rb5"), created_by=user)
    jobs.cancel(ctx, job.id, "not needed")
    with pytest.raises(Conflict) as ended:
        jobs.cancel(ctx, job.id)
    assert refusal(ended.value) == (409, "conflict", "Job finished",
                                    f"job {job.id} already ended as cancelled")

    ctx.store.delete(model.sha256)
    with pytest.raises(Gone) as gone:
        catalog.model_file(ctx, model.id)
    assert refusal(gone.value)[:2] == (410, "artifact-missing")


def test_a_refused_upload_leaves_nothing_behind(ctx):
    writer = ctx.store.writer()
    writer.write(b"hello, world\n" * 50)
    with pytest.raises(UnsupportedMedia) as refused:
        catalog.add_model(ctx, writer, ModelMeta(), "notes.tflite", BASE_URL)
    status, code, title, detail = refusal(refused.value)
    assert (status, code, title) == (415, "unsupported-model", "Not a model file")
    assert "notes.tflite" in detail and str(writer.temp_path) not in detail
    assert [p for p in ctx.store.root.rglob("*") if p.is_file()] == []
    listed = catalog.list_models(ctx, BASE_URL)
    assert listed.items == [] and listed.total == 0


def test_the_api_and_the_dashboard_answer_the_same_refusal(farm, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite(seed=4))
    model = farm.push_model(path, name="m")
    blob = farm.server.data_dir / "artifacts" / model["sha256"][:2] / model["sha256"]
    blob.unlink()
    gone = farm.user.get(f"/api/v1/models/{model['id']}/file")
    assert gone.status_code == 410 and gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["type"] == "https://edgefarm.dev/problems/artifact-missing"
    api = farm.user.get("/api/v1/results/compare", params={"family": "nope"})
    assert api.status_code == 404 and api.json()["type"].endswith("/not-found")
    assert api.json()["detail"] == "no model family 'nope'"
    page = farm.user.get("/compare/nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no model family &#39;nope&#39;" in page.text and "Not found" in page.text
