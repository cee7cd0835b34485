"""The code runner's pure parts: proxy addressing, message folding, result models."""

from __future__ import annotations

import httpx
import pytest

from wrenn._code_runner import (
    CellCollector,
    Execution,
    ExecutionError,
    Result,
    check_language,
    execute_request,
    pick_kernel,
    proxy_endpoint,
)


@pytest.mark.parametrize(
    ("base", "domain", "url", "headers"),
    [
        ("https://app.wrenn.dev/api", "wrenn.dev", "https://8888-cl-a1.wrenn.dev", {}),
        (
            "http://127.0.0.1:5000",
            "127.0.0.1:5000",
            "http://127.0.0.1:5000",
            {"Host": "8888-cl-a1.127.0.0.1:5000"},
        ),
        (
            "http://localhost:8000",
            "localhost:8000",
            "http://localhost:8000",
            {"Host": "8888-cl-a1.localhost:8000"},
        ),
        (
            "http://x.localhost:8000",
            "x.localhost:8000",
            "http://127.0.0.1:8000",
            {"Host": "8888-cl-a1.x.localhost:8000"},
        ),
        ("http://[::1]:9000", "[::1]:9000", "http://[::1]:9000", {"Host": "8888-cl-a1.[::1]:9000"}),
    ],
)
def test_proxy_endpoint(base: str, domain: str, url: str, headers: dict[str, str]) -> None:
    assert proxy_endpoint(httpx.URL(base), domain, "cl-a1", 8888) == (url, headers)


@pytest.mark.parametrize("capsule_id", ["x.attacker.test#", "CL-UPPER", "a/b", ""])
def test_proxy_endpoint_refuses_ids_that_are_not_host_labels(capsule_id: str) -> None:
    # RELIABILITY row 42: such an id would send requests to another host.
    with pytest.raises(ValueError, match="host label"):
        proxy_endpoint(httpx.URL("https://app.wrenn.dev/api"), "wrenn.dev", capsule_id, 8888)


def test_execute_request_has_fresh_ids_and_the_protocol_fields() -> None:
    a, b = execute_request("1"), execute_request("1")
    assert a["header"]["msg_id"] != b["header"]["msg_id"]
    assert a["header"]["session"] != b["header"]["session"]
    assert a["header"]["version"] == "5.3" and a["channel"] == "shell"
    assert a["content"]["code"] == "1" and a["content"]["allow_stdin"] is False
    with pytest.raises(TypeError):
        execute_request(None)  # type: ignore[arg-type]


def test_check_language() -> None:
    check_language("python")
    with pytest.raises(ValueError, match="kernel="):
        check_language("javascript")


def test_pick_kernel() -> None:
    kernels = [{"id": "a", "name": "python3"}, {"id": "b", "name": "wrenn"}, {"id": "c"}]
    assert pick_kernel(kernels, "wrenn") == "b"
    assert pick_kernel(kernels, "julia") is None
    assert pick_kernel({"not": "a list"}, "wrenn") is None
    assert pick_kernel([{"name": "wrenn", "id": ""}], "wrenn") is None


def _msg(kind: str, content: dict[str, object], parent: str = "m1") -> dict[str, object]:
    return {"msg_type": kind, "parent_header": {"msg_id": parent}, "content": content}


def test_collector_folds_only_its_own_cell() -> None:
    outs: list[str] = []
    errors: list[ExecutionError] = []
    cell = CellCollector("m1", None, outs.append, None, errors.append)
    assert not cell.apply(_msg("stream", {"name": "stdout", "text": "other"}, parent="m0"))
    assert not cell.apply(_msg("stream", {"name": "stdout", "text": "a"}))
    assert not cell.apply(_msg("stream", {"name": "stderr", "text": "b"}))
    assert not cell.apply(_msg("display_data", {"data": {"image/png": "iVBO", "x/y": 1}}))
    assert not cell.apply(
        _msg("execute_result", {"data": {"text/plain": "3"}, "execution_count": 4})
    )
    assert not cell.apply(_msg("error", {"ename": "E", "evalue": "v", "traceback": ["l1", "l2"]}))
    assert not cell.apply("not a dict")
    assert not cell.apply(_msg("status", {"execution_state": "busy"}))
    assert not cell.apply(_msg("status", {"execution_state": "idle"}))  # no answer yet
    assert cell.apply(_msg("execute_reply", {"status": "ok", "execution_count": 4}))
    cell.check_complete()
    execution = cell.execution
    assert execution.logs.stdout == ["a"] and execution.logs.stderr == ["b"] and outs == ["a"]
    assert execution.text == "3" and execution.execution_count == 4
    assert execution.results[0].png == "iVBO" and execution.results[0].extra == {"x/y": 1}
    assert execution.error == ExecutionError("E", "v", "l1\nl2") and errors == [execution.error]


def test_an_aborted_cell_says_so() -> None:
    cell = CellCollector("m1", None, None, None, None)
    cell.apply(_msg("execute_reply", {"status": "aborted", "execution_count": 9}))
    assert cell.execution.error is not None and cell.execution.error.name == "Aborted"
    assert cell.execution.execution_count == 9


def test_result_from_bundle_and_formats() -> None:
    result = Result.from_bundle(
        {"text/plain": "t", "application/json": {"a": 1}, "application/x-thing": "z"},
        is_main_result=True,
    )
    assert result.text == "t" and result.json == {"a": 1} and result.is_main_result
    assert result.formats() == ["text", "json", "application/x-thing"]
    assert Execution().text is None


def test_a_cell_ends_when_idle_and_answered_in_either_order() -> None:
    cell = CellCollector("m1", None, None, None, None)
    assert not cell.apply(_msg("status", {"execution_state": "busy"}))
    assert not cell.apply(_msg("execute_reply", {"status": "ok", "execution_count": 2}))
    assert cell.apply(_msg("status", {"execution_state": "idle"}))
    assert cell.execution.execution_count == 2


def test_a_cell_whose_start_was_never_seen_is_not_an_empty_success() -> None:
    # A subscription that went live mid-cell: only the final idle (and the reply) arrive.
    cell = CellCollector("m1", None, None, None, None)
    cell.apply(_msg("status", {"execution_state": "idle"}))
    assert cell.apply(_msg("execute_reply", {"status": "ok", "execution_count": 3}))
    cell.check_complete()
    assert cell.execution.error is not None and cell.execution.error.name == "Incomplete"
    # a cell seen from its start is complete, even with no output at all
    whole = CellCollector("m2", None, None, None, None)
    whole.apply(_msg("status", {"execution_state": "busy"}, parent="m2"))
    whole.apply(_msg("execute_input", {"code": "pass"}, parent="m2"))
    whole.apply(_msg("status", {"execution_state": "idle"}, parent="m2"))
    whole.apply(_msg("execute_reply", {"status": "ok"}, parent="m2"))
    whole.check_complete()
    assert whole.execution.error is None


def test_proxy_endpoint_sends_the_capsule_token_never_the_key() -> None:
    from wrenn._code_runner import PROXY_TOKEN_HEADER, proxy_token

    key = "wrn_" + "0" * 32
    token = proxy_token(key, "cl-a1")
    assert key not in token and token != proxy_token(key, "cl-a2")
    for base, domain in (("http://127.0.0.1:5000", "127.0.0.1:5000"), ("https://x/api", "x.dev")):
        _, headers = proxy_endpoint(httpx.URL(base), domain, "cl-a1", 8888, token=token)
        assert headers[PROXY_TOKEN_HEADER] == token
        assert key not in headers.values()
