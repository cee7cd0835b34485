"""The official SDK's errors and its models' pydantic methods, as code written against it uses them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

import wrenn
import wrenn.exceptions
import wrenn.models as models
from wrenn import GitAuthError, GitCommandError, GitError, WrennError, WrennHostHasCapsulesError
from wrenn._error_mapping import error_from_response
from wrenn.models import ModelValidationError

# --- errors ------------------------------------------------------------------------

OFFICIAL_ERRORS = [
    "WrennError", "WrennValidationError", "WrennAuthenticationError", "WrennForbiddenError",
    "WrennNotFoundError", "WrennConflictError", "WrennHostUnavailableError", "WrennAgentError",
    "WrennInternalError",
]  # fmt: skip


@pytest.mark.parametrize("name", OFFICIAL_ERRORS)
def test_official_error_constructors_positional_and_keyword(name: str) -> None:
    cls = getattr(wrenn, name)
    for error in (
        cls("not_found", "capsule cl-1 not found", 404),
        cls(code="not_found", message="capsule cl-1 not found", status_code=404),
    ):
        assert (error.code, error.message, error.status_code) == (
            "not_found",
            "capsule cl-1 not found",
            404,
        )
        # The official errors pass only the message to Exception, so str() is the message.
        assert str(error) == "capsule cl-1 not found"
        assert error.args == ("capsule cl-1 not found",)
        assert isinstance(error, WrennError)
        assert "not_found" in repr(error) and "404" in repr(error)


def test_host_has_capsules_error_takes_capsule_ids_fourth() -> None:
    error = WrennHostHasCapsulesError("host_has_capsules", "host busy", 409, ["cl-1", "cl-2"])
    assert (error.code, error.message, error.status_code) == ("host_has_capsules", "host busy", 409)
    assert error.capsule_ids == ["cl-1", "cl-2"]
    assert str(error) == "host busy"
    assert isinstance(error, wrenn.WrennConflictError)
    keyword = WrennHostHasCapsulesError(
        code="host_has_capsules", message="host busy", status_code=409, capsule_ids=["cl-3"]
    )
    assert keyword.capsule_ids == ["cl-3"]
    with pytest.warns(DeprecationWarning, match="capsule_ids"):
        assert keyword.sandbox_ids == ["cl-3"]
    with pytest.warns(DeprecationWarning):
        assert wrenn.exceptions.WrennHostHasSandboxesError is WrennHostHasCapsulesError


def test_an_error_from_the_server_reads_as_its_message() -> None:
    body = json.dumps({"error": {"code": "not_found", "message": "capsule not found"}}).encode()
    error = error_from_response(
        404, {"content-type": "application/json", "x-request-id": "req-1"}, body, scrub=str
    )
    assert isinstance(error, wrenn.WrennNotFoundError)
    assert str(error) == "capsule not found"
    assert error.request_id == "req-1" and "req-1" in repr(error)
    busy = json.dumps(
        {"error": {"code": "has_active_sandboxes", "message": "busy", "sandbox_ids": ["cl-9"]}}
    ).encode()
    host_error = error_from_response(409, {}, busy, scrub=str)
    assert isinstance(host_error, WrennHostHasCapsulesError)
    assert host_error.capsule_ids == ["cl-9"] and str(host_error) == "busy"


def test_the_official_response_helpers() -> None:
    import httpx

    body = {"error": {"code": "not_found", "message": "no such capsule"}}
    missing = httpx.Response(404, json=body)
    for helper in (wrenn.exceptions.handle_response, wrenn.exceptions._raise_for_status):
        with pytest.raises(wrenn.WrennNotFoundError) as info:
            helper(missing)
        assert str(info.value) == "no such capsule" and info.value.status_code == 404
    assert wrenn.exceptions._raise_for_status(httpx.Response(200, json=[])) is None
    assert wrenn.exceptions.handle_response(httpx.Response(200, json=[{"id": "x"}])) == [
        {"id": "x"}
    ]
    assert wrenn.exceptions.handle_response(httpx.Response(204)) == {}


def test_git_errors_are_caught_as_in_the_official_sdk() -> None:
    error = GitError("git push failed", stderr="fatal: nope", exit_code=128)
    assert (error.message, error.stderr, error.exit_code) == ("git push failed", "fatal: nope", 128)
    assert str(error) == "git push failed"
    defaults = GitError("x")
    assert (defaults.stderr, defaults.exit_code) == ("", -1)
    for cls in (GitCommandError, GitAuthError):
        with pytest.raises(GitError) as info:
            raise cls("git clone failed", stderr="auth", exit_code=1)
        assert type(info.value) is cls and str(info.value) == "git clone failed"
    assert not issubclass(GitCommandError, GitAuthError)
    assert not issubclass(GitAuthError, GitCommandError)
    assert wrenn.exceptions.GitError is GitError
    assert wrenn.exceptions.GitAuthError is GitAuthError


# --- models ------------------------------------------------------------------------

CAPSULE: dict[str, Any] = {
    "id": "cl-1",
    "status": "running",
    "template": "minimal",
    "vcpus": 2,
    "created_at": "2026-11-28T10:00:00Z",
    "metadata": {"team": "a"},
}
UTC = dt.timezone.utc


def test_model_dump_is_python_data_with_datetimes_kept() -> None:
    capsule = models.Capsule.model_validate(CAPSULE)
    dumped = capsule.model_dump()
    assert dumped["id"] == "cl-1" and dumped["vcpus"] == 2
    assert dumped["created_at"] == dt.datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert isinstance(dumped["created_at"], dt.datetime)
    assert dumped["status"] is models.Status.running  # enum members kept, as pydantic does
    assert dumped["started_at"] is None  # every field, as pydantic
    assert set(dumped) == {f for f in models.Capsule.__struct_fields__}
    dumped["metadata"]["team"] = "changed"
    assert capsule.metadata == {"team": "a"}  # a copy, not the model's own dict


def test_model_dump_json_mode_and_options() -> None:
    capsule = models.Capsule.model_validate(CAPSULE)
    as_json = capsule.model_dump(mode="json", exclude_none=True)
    assert as_json == {
        "id": "cl-1",
        "status": "running",
        "template": "minimal",
        "vcpus": 2,
        "created_at": "2026-11-28T10:00:00Z",
        "metadata": {"team": "a"},
    }
    assert type(as_json["status"]) is str
    text = capsule.model_dump_json()
    assert isinstance(text, str) and json.loads(text) == capsule.model_dump(mode="json")
    assert json.loads(capsule.model_dump_json(exclude_none=True)) == as_json
    assert "\n" in capsule.model_dump_json(indent=2)
    assert capsule.model_dump(include={"id", "vcpus"}) == {"id": "cl-1", "vcpus": 2}
    assert "metadata" not in capsule.model_dump(exclude={"metadata"})
    assert capsule.to_dict()["created_at"] == "2026-11-28T10:00:00Z"  # to_dict unchanged
    with pytest.raises(ValueError):
        capsule.model_dump(mode="yaml")


def test_nested_models_lists_and_aliases_dump() -> None:
    stats = models.CapsuleStats.model_validate(
        {
            "range": "1h",
            "current": {"running_count": 1},
            "peaks": {"running_count": 3, "vcpus": 4, "memory_mb": 1024},
            "series": {"labels": ["2026-11-28T10:00:00Z"], "running": [1]},
        }
    )
    dumped = stats.model_dump()
    assert dumped["peaks"] == {"running_count": 3, "vcpus": 4, "memory_mb": 1024}
    assert dumped["series"]["labels"] == [dt.datetime(2026, 11, 28, 10, tzinfo=UTC)]
    assert stats.model_dump(mode="json")["range"] == "1h"
    usage = models.UsageResponse.model_validate(
        {"from": "2026-11-01", "to": "2026-11-02", "points": [{"date": "2026-11-01"}]}
    )
    assert usage.from_ == dt.date(2026, 11, 1)
    assert usage.model_dump()["from_"] == dt.date(2026, 11, 1)  # field names, as pydantic
    assert usage.model_dump(mode="json", by_alias=True)["from"] == "2026-11-01"
    assert usage.model_dump()["points"][0]["date"] == dt.date(2026, 11, 1)
    assert models.UsageResponse.model_validate({"from_": "2026-11-01"}).from_ == usage.from_


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (models.Capsule, CAPSULE),
        (models.Template, {"name": "snap", "type": "snapshot", "created_at": "2026-11-28T10:00:00Z"}),
        (models.CapsuleMetrics, {"sandbox_id": "cl-1", "range": "10m", "points": [{"cpu_pct": 1.5}]}),
        (models.UsageResponse, {"from": "2026-11-01", "points": [{"cpu_minutes": 2.0}]}),
        (models.SSEEvent, {"event": "capsule.create", "outcome": "success", "sandbox": CAPSULE}),
        (models.ListDirResponse, {"entries": [{"name": "a", "type": "file", "size": 3}]}),
        (models.MakeDirResponse, {"entry": {"name": "d", "type": "directory"}}),
        (models.Error, {"error": {"code": "not_found", "message": "gone"}}),
    ],
)  # fmt: skip
def test_model_validate_and_json_round_trip(cls: type[Any], data: dict[str, Any]) -> None:
    model = cls.model_validate(data)
    assert isinstance(model, cls)
    assert cls.model_validate(model) is model
    assert cls.model_validate_json(model.model_dump_json()) == model
    assert cls.model_validate_json(json.dumps(data)) == model
    assert cls.model_validate_json(json.dumps(data).encode()) == model
    assert cls.model_validate(model.model_dump()) == model
    assert cls.model_validate(model.model_dump(mode="json")) == model


def test_model_validate_coerces_like_pydantic_lax_mode_unless_strict() -> None:
    capsule = models.Capsule.model_validate({"id": "cl-1", "vcpus": "2", "status": "migrating"})
    assert capsule.vcpus == 2
    assert capsule.status == "migrating"  # an unknown status is kept, not an error
    with pytest.raises(ModelValidationError):
        models.Capsule.model_validate({"id": "cl-1", "vcpus": "2"}, strict=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda: models.Capsule.model_validate({"vcpus": 1}),  # id is required
        lambda: models.Capsule.model_validate({"id": "cl-1", "vcpus": "two"}),
        lambda: models.Capsule.model_validate(["not", "a", "dict"]),
        lambda: models.Capsule.model_validate_json("{not json"),
        lambda: models.Capsule.model_validate_json('{"id": 5}'),
        lambda: models.UsageResponse.model_validate_json("{not json"),
        lambda: models.FileEntry.model_validate({"name": "a", "size": "big"}),
    ],
)
def test_model_validation_errors_are_value_errors_naming_the_model(call: Any) -> None:
    with pytest.raises(ModelValidationError) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert "invalid " in str(info.value) and info.value.__cause__ is not None


def test_model_copy_replaces_fields() -> None:
    capsule = models.Capsule.model_validate(CAPSULE)
    bigger = capsule.model_copy(update={"vcpus": 8})
    assert (bigger.vcpus, capsule.vcpus, bigger.id) == (8, 2, "cl-1")


def test_every_response_model_has_the_pydantic_methods() -> None:
    base = models.Capsule.__mro__[1]
    response_models = [
        getattr(models, name)
        for name in models.__all__
        if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), base)
    ]
    assert len(response_models) >= 20
    for cls in response_models:
        for method in ("model_dump", "model_dump_json", "model_copy", "to_dict"):
            assert callable(getattr(cls, method)), (cls, method)
        for method in ("model_validate", "model_validate_json"):
            assert getattr(cls, method).__self__ is cls, (cls, method)  # classmethods
