"""Prism (https://github.com/stoplightio/prism) serving OpenAI's OpenAPI spec, once per session.

``prism mock --errors`` checks every request against the spec (a violation is answered 422 with
the list of violations) and answers with the spec's examples, or with random data generated from
the response schema when a request says ``Prefer: dynamic=true, seed=N`` (the same seed, the same
response). ``bash scripts/test.sh`` installs the pinned Prism into ``node_modules`` with
``npm ci``; without it these tests fail under CI (``CI=true``) and are skipped elsewhere.

Prism cannot use the spec exactly as published, so :func:`prism_ready_spec` writes a copy that
differs in one way: ``nullable`` is dropped from the schemas that have no ``type``. OpenAPI 3.0.3
defines ``nullable`` as having no effect without ``type``, but Prism's validator (Ajv) refuses to
compile such a schema, and Prism then skips the validation of that request body *silently*: every
chat/completions, completions, moderations and images request would pass, whatever it held.
``test_prism_rejects_a_broken_request`` keeps that from coming back unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PRISM = ROOT / "node_modules" / ".bin" / "prism"
# OpenAI's official OpenAPI spec (MIT), as published in openai/openai-python
# (api_reference/openapi.transformed.yml at commit e43b422412a9e96c9cc5192c61fffbe2d7e04836,
# 2026-08-21, one description link reduced to plain text), kept beside the tests so that a
# clean clone has it.
SPEC = Path(__file__).resolve().parent / "openai-openapi.yml"
STARTUP_TIMEOUT = 240.0  # measured: about 20 s on an idle 2-core machine


class _Yaml12Loader(yaml.CSafeLoader):
    """YAML 1.2 floats, as Prism reads them: PyYAML (YAML 1.1) would load ``-9.2e18``, which has
    no dot, as a string."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def prism_ready_spec(source: Path, target: Path) -> int:
    """Write ``source`` as JSON to ``target`` without the ``nullable`` keywords that stand
    without a ``type``; return how many were dropped."""
    with source.open(encoding="utf-8") as file:
        spec = yaml.load(file, Loader=_Yaml12Loader)  # a safe loader
    dropped = 0

    def walk(node: Any) -> None:
        nonlocal dropped
        if isinstance(node, dict):
            if "nullable" in node and "type" not in node:
                del node["nullable"]
                dropped += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    target.write_text(json.dumps(spec), encoding="utf-8")
    return dropped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running ``prism mock --errors`` (the spec's paths sit right below it,
    as they do below ``https://api.openai.com/v1``)."""
    if not PRISM.exists():
        reason = f"Prism is not installed ({PRISM} is missing): run `npm ci` in {ROOT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("prism")
    spec = workdir / "openai-openapi.json"
    assert prism_ready_spec(SPEC, spec) > 0
    port = _free_port()
    log_path = workdir / "prism.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PRISM, "mock", spec, "-h", "127.0.0.1", "-p", str(port), "--errors", "-v", "warn"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT:
                log_tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"Prism did not start on port {port}:\n{log_tail}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
