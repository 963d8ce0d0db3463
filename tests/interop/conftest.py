"""Fixtures of the interop suite: llmock, fakellm and the LiteLLM proxy, each started on a free
loopback port from its own venv (see servers.py), and the MockOpenAIServer the proxy forwards
to."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_multi_client.testing import KeyLimits, MockOpenAIServer

from .servers import ServerProcess, free_port, http_json, server_bin
from .strict_upstream import StrictUpstream

# The upstream's keys, one per model group of the proxy (see LITELLM_MODELS).
UPSTREAM_KEYS = {
    "good": KeyLimits(),
    "noquota": KeyLimits(),
    "dead": KeyLimits(),
    "limited": KeyLimits(requests_per_minute=60),
    "paced": KeyLimits(requests_per_minute=600),
}


@pytest.fixture(scope="session")
def llmock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """llmock 0.2.2 (``llmock serve``), reset before each use by :func:`llmock_url`."""
    program = server_bin("llmock", "llmock")
    port = free_port()
    log = tmp_path_factory.mktemp("llmock") / "llmock.log"
    argv = [str(program), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess("llmock", [*argv, "--log-level", "warning"], port, log)
    server.wait_ready("/health", timeout=30)
    yield server
    server.stop()


@pytest.fixture
def llmock_url(llmock: ServerProcess) -> str:
    """llmock's base URL, with no behaviours queued and no requests remembered."""
    http_json("POST", llmock.url + "/_llmock/reset", {})
    return llmock.url + "/v1"


FAKELLM_CONFIG = """\
version: 1
defaults:
  fallback: deterministic_echo
rules:
  # The smallest reproduction of issue 16's item 1: a bare 429, no hint, no limit headers.
  - name: rate_limit_rule
    when:
      messages_contain: "rate-limit me"
    respond:
      status: 429
      error: "Rate limit exceeded (mock)"
"""


@pytest.fixture(scope="module")
def fakellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """fakellm 0.3.5 with a rule answering a bare 429 to messages containing "rate-limit me"
    (everything else is echoed)."""
    program = server_bin("fakellm", "fakellm")
    directory = tmp_path_factory.mktemp("fakellm")
    config = directory / "fakellm.yaml"
    config.write_text(FAKELLM_CONFIG)
    port = free_port()
    argv = [str(program), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(
        "fakellm", [*argv, "--config", str(config)], port, directory / "fakellm.log"
    )
    server.wait_ready("/_fakellm/stats", timeout=30)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockOpenAIServer]:
    """Our mock as the proxy's upstream: one key per model group (UPSTREAM_KEYS)."""
    server = MockOpenAIServer(
        keys={f"sk-upstream-{name}": limits for name, limits in UPSTREAM_KEYS.items()},
        no_quota_keys={"sk-upstream-noquota"},
        invalid_keys={"sk-upstream-dead"},
    )
    server.start_in_thread()
    yield server
    server.stop_in_thread()


# The rate of the upstream whose 429s carry their wait only in headers (model group "strict").
STRICT_RPM = 30


@pytest.fixture(scope="session")
def strict_upstream() -> Iterator[StrictUpstream]:
    """The proxy's model group "strict": an upstream at STRICT_RPM without burst."""
    server = StrictUpstream(STRICT_RPM)
    server.start_in_thread()
    yield server
    server.stop_in_thread()


def litellm_config(upstream_url: str, strict_url: str) -> str:
    """The proxy's config: a model group per upstream key, an embeddings group, a canned one,
    the strict upstream; no retries or cool-downs of its own, so what the client sees is what
    the upstream said."""
    groups = [
        f"  - model_name: {name}\n"
        f"    litellm_params: {{model: openai/gpt-4o-mini, api_base: '{upstream_url}', "
        f"api_key: sk-upstream-{name}}}\n"
        for name in UPSTREAM_KEYS
    ]
    return (
        "model_list:\n" + "".join(groups) + "  - model_name: embed\n"
        f"    litellm_params: {{model: openai/text-embedding-3-small, api_base: '{upstream_url}',"
        " api_key: sk-upstream-good}\n"
        "  - model_name: strict\n"
        f"    litellm_params: {{model: openai/gpt-4o-mini, api_base: '{strict_url}', "
        "api_key: sk-upstream-strict}\n"
        "  - model_name: canned\n"
        "    litellm_params: {model: openai/gpt-4o-mini, mock_response: 'canned answer', "
        "api_key: sk-unused}\n"
        "litellm_settings:\n  num_retries: 0\n"
        "router_settings:\n  disable_cooldowns: true\n"
        "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
    )


class LiteLLM:
    """A running LiteLLM proxy: ``base_url`` and the ``key`` it accepts (its master key)."""

    def __init__(self, process: ServerProcess, key: str, started_in: float) -> None:
        self.process = process
        self.base_url = process.url + "/v1"
        self.key = key
        self.started_in = started_in


@pytest.fixture(scope="session")
def litellm(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: MockOpenAIServer,
    strict_upstream: StrictUpstream,
) -> Iterator[LiteLLM]:
    """LiteLLM proxy 1.106.12 in front of :func:`upstream` (7-20 s to start)."""
    program = server_bin("litellm", "litellm")
    directory: Path = tmp_path_factory.mktemp("litellm")
    config = directory / "config.yaml"
    config.write_text(litellm_config(upstream.base_url, strict_upstream.base_url))
    key = "sk-interop-" + secrets.token_hex(16)
    port = free_port()
    argv = [str(program), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    env = {
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at start
        "LITELLM_LOG": "ERROR",
    }
    process = ServerProcess("litellm", argv, port, directory / "litellm.log", env, directory)
    started_in = process.wait_ready("/health/liveliness", timeout=90)
    yield LiteLLM(process, key, started_in)
    process.stop()
