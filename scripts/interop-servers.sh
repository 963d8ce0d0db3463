#!/usr/bin/env bash
# Installs the third-party OpenAI-compatible servers of the interop suite (tests/interop), each in
# its own venv under .interop/ (git ignores it), never into the project's .venv: their
# dependencies must not touch ours. Pinned versions; a venv whose pin is already installed is
# reused. Usage: bash scripts/interop-servers.sh [llmock|fakellm|litellm ...] (default: all).
# Exit status is non-zero when any install failed; the tests then skip (or fail when CI is set).
set -uo pipefail
cd "$(dirname "$0")/.."

# litellm: 1.82.7 and 1.82.8 were compromised releases on PyPI; never pin those.
declare -A PINS=(
  [llmock]="llmock==0.2.2"
  [fakellm]="fakellm==0.3.5"
  [litellm]="litellm[proxy]==1.106.12"
)
servers=("$@")
[ ${#servers[@]} -eq 0 ] && servers=(llmock fakellm litellm)

status=0
for name in "${servers[@]}"; do
  pin="${PINS[$name]:-}"
  if [ -z "$pin" ]; then
    echo "interop-servers: unknown server '$name' (known: ${!PINS[*]})" >&2
    status=1
    continue
  fi
  venv=".interop/$name-venv"
  stamp="$venv/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pin" ]; then
    continue
  fi
  echo "== interop: installing $pin into $venv"
  start=$SECONDS
  rm -rf "$venv"
  if python3 -m venv "$venv" \
      && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pin"; then
    echo "$pin" > "$stamp"
    echo "== interop: $pin installed in $((SECONDS - start)) s"
  else
    echo "interop-servers: could not install $pin into $venv" >&2
    status=1
  fi
done
exit $status
