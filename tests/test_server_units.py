"""Pure units of the server: bind safety, admission control, request parsing, per-request
fields."""

from __future__ import annotations

import pytest

from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, load_modes
from localroute.server.errors import APIError
from localroute.server.overload import Admission, Overloaded
from localroute.server.pipeline import RequestOptions, capped_modes
from localroute.server.schemas import ChatCompletionRequest, parse_body
from localroute.server.settings import ServerSettings, check_bind, is_loopback
from tests.conftest import make_profile, server_role

URL = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False)])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_bind_needs_a_key() -> None:
    with pytest.raises(ValueError, match="--api-key"):
        check_bind(ServerSettings(host="0.0.0.0"))
    check_bind(ServerSettings(host="0.0.0.0", api_key="k"))
    check_bind(ServerSettings(host="127.0.0.1"))



def test_admission_allows_capacity_plus_queue_then_refuses() -> None:
    profile = make_profile({"router": server_role(URL, max_concurrency=2)})
    admission = Admission(LLMClient(profile).gates, max_queue=1)
    router = profile.role("router")
    tickets = [admission.admit(router) for _ in range(3)]
    with pytest.raises(Overloaded, match="role 'router' is busy") as refused:
        admission.admit(router)
    assert refused.value.retry_after >= 1
    tickets[0].release(0.5)
    tickets[0].release(0.5)  # a second release is a no-op, never a negative count
    assert admission.admitted() == {"router": 2}
    admission.admit(router)


def test_a_sharing_role_is_limited_by_its_own_gate_too() -> None:
    profile = make_profile({"router": server_role(URL, max_concurrency=3),
                            "validation": {"shares_instance_with": "router",
                                           "max_concurrency": 1}})
    admission = Admission(LLMClient(profile).gates, max_queue=0)
    admission.admit(profile.role("validation"))
    with pytest.raises(Overloaded, match="validation@router"):
        admission.admit(profile.role("validation"))
    admission.admit(profile.role("router"))  # the instance still has room


def test_retry_after_follows_observed_latency() -> None:
    profile = make_profile({"router": server_role(URL)})
    admission = Admission(LLMClient(profile).gates, max_queue=0)
    admission.admit(profile.role("router")).release(10.0)
    assert admission.retry_after("router", ahead=2, capacity=1) == 20
    assert admission.retry_after("unknown", ahead=1, capacity=1) == 1
    assert admission.retry_after("router", ahead=100, capacity=1) == 60


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"\xff", 400, "not valid JSON"),
    (b'"text"', 400, "JSON object"),
    (b'{"model": "auto"}', 422, "messages"),
    (b'{"model": "auto", "messages": [{"role": "user"}], "temperature": 3}', 422,
     "temperature"),
    (b'{"model": "auto", "messages": [{"role": "user"}], "response_format": '
     b'{"type": "json_schema"}}', 422, "json_schema"),
])
def test_parse_body_errors(body: bytes, status: int, fragment: str) -> None:
    with pytest.raises(APIError) as exc:
        parse_body(body, ChatCompletionRequest)
    assert exc.value.status == status and fragment in exc.value.message


def test_request_fields_passed_through_and_token_limit() -> None:
    req = parse_body(b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], '
                     b'"max_completion_tokens": 7, "tool_choice": "none", "seed": 1, '
                     b'"logprobs": true, "response_format": {"type": "text"}}',
                     ChatCompletionRequest)
    assert req.token_limit == 7
    assert req.passthrough() == {"tool_choice": "none", "seed": 1}
    assert req.response_format is None  # plain text needs no constraint


def test_per_request_fields_go_over_the_roles_extra_body() -> None:
    client = LLMClient(make_profile({"router": server_role(URL, extra_body={"top_k": 5,
                                                                            "seed": 1})}))
    role = client.profile.role("router")
    wire = client.request(role, [], None, None, 16, None, None,
                          {"tool_choice": "required", "seed": 7})
    assert wire.extra_body == {"top_k": 5, "seed": 7, "tool_choice": "required"}
    assert role.extra_body == {"top_k": 5, "seed": 1}  # the profile is not touched
    assert client.request(role, [], None, None, 16, None, None).extra_body == role.extra_body


def test_only_client_tools_or_a_format_direct_the_pipeline() -> None:
    # Sampling fields ride along on the pipeline's own call; they do not bypass its tools.
    sampled = RequestOptions(temperature=0.2, passthrough={"seed": 1, "stop": ["x"]})
    assert not sampled.directed and sampled.extra_body == {"seed": 1, "stop": ["x"]}
    assert RequestOptions().extra_body is None
    assert RequestOptions(tools=[{"type": "function", "function": {"name": "f"}}]).directed
    assert RequestOptions(response_format={"type": "json_object"}).directed


def test_capped_modes_lower_only_the_active_mode() -> None:
    modes = load_modes()
    capped = capped_modes(modes, Mode.ALERT, ["router", "reasoning"], 100)
    assert capped.policy(Mode.ALERT).max_tokens == {"router": 100, "reasoning": 100}
    assert capped.policy(Mode.NORMAL) == modes.policy(Mode.NORMAL)
    tighter = capped_modes(modes, Mode.RECOVERY, ["reasoning"], 5000)
    assert tighter.policy(Mode.RECOVERY).max_tokens["reasoning"] == 1024  # the mode's cap wins
