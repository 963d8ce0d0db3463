#!/usr/bin/env bash
# Sets up .venv with the development extras and runs every check the project has:
# ruff (lint and format), mypy --strict, and the whole pytest suite, first without the optional
# extras and then again with them (the library must work both ways; the tests of an extra run
# where it is installed, and skip saying so where it is not). Needs npm (Node 20+) for
# Prism, which the contract tests (tests/contract) run against OpenAI's OpenAPI spec.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k engine`.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server (Debian's package) for the shared-limits tests, which start it on a free port.
if ! command -v redis-server >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== installing redis-server"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "warning: no redis-server: the Redis tests will skip (they fail when CI is set)" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/python -m pip uninstall --quiet --yes orjson uvloop redis ray prometheus-client rich >/dev/null 2>&1 || true

# Prism (pinned in package-lock.json) for the contract tests, at node_modules/.bin/prism.
# `npm ci` takes half a minute even from npm's cache, so it runs only when the lock changed.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -x node_modules/.bin/prism ] || [ "$(cat node_modules/.lock-sum 2>/dev/null)" != "$lock_sum" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_sum" > node_modules/.lock-sum
fi

# The interop suite's servers (llmock, fakellm, LiteLLM proxy), each in its own venv under
# .interop/; about 2 minutes the first time, nothing after. With CI set, a failed install fails
# the run (the interop tests fail); locally they skip, saying why.
echo "== interop servers"
if ! bash scripts/interop-servers.sh; then
  [ -n "${CI:-}" ] && { echo "error: interop servers could not be installed" >&2; exit 1; }
  echo "warning: some interop servers are missing: their tests will skip" >&2
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest (no optional extras; the Ray tests run in the second pass)"
.venv/bin/pytest -m "not ray" "$@"
echo "== pytest (with the extras: orjson, redis, ray, prometheus-client, rich; the slow and the Prism contract tests ran above)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,speed,redis,ray,metrics,live]'
.venv/bin/pytest -m "not slow and not contract and not interop" "$@"
