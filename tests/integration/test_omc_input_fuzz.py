"""``omc run`` on arbitrary input files, in process against its built-in mock server: whatever
the lines hold (garbage, NaN, lone surrogates, huge numbers, any body), every non-blank line
ends as exactly one record, a result or a bad-line error, and the run never stops early."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openai_multi_client.cli import build_parser


def omc(*argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
        code = int(args.run(args))
    return code, printed.getvalue()


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(),  # NaN and infinities too: written as JSON's superset writes them
        st.text(max_size=10),
        st.sampled_from(["\ud800", "\udfff"]),  # lone surrogates: valid JSON escapes
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


def chat_body(text: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


request_lines = st.tuples(
    st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/edits"]),
    st.one_of(
        st.builds(chat_body, st.text(max_size=20), st.dictionaries(st.text(max_size=6),
                  json_values(), max_size=2)),
        st.dictionaries(st.text(max_size=6), json_values(), max_size=3),
        json_values(),
    ),
)  # fmt: skip
lines_strategy = st.lists(
    st.one_of(
        request_lines,
        st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b" ")),
        st.sampled_from([b"", b"   ", b"{", b"[]", b'{"custom_id": 5}']),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25)
@given(specs=lines_strategy)
def test_every_input_line_ends_as_exactly_one_record(specs: list[Any]) -> None:
    raw_lines: list[bytes] = []
    line_of: dict[str, int] = {}
    for number, spec in enumerate(specs, 1):
        if isinstance(spec, bytes):
            raw_lines.append(spec)
            continue
        url, body = spec
        custom_id = f"id-{number}"
        line_of[custom_id] = number
        line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
        raw_lines.append(json.dumps(line).encode())  # NaN, Infinity and \ud800 as Python writes
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        source, out, errors = folder / "in.jsonl", folder / "out.jsonl", folder / "errors.jsonl"
        source.write_bytes(b"\n".join(raw_lines) + b"\n")
        code, printed = omc(
            "run", str(source), "-o", str(out), "--errors", str(errors), "--mock",
            "--max-retries", "2",
        )  # fmt: skip
        written = [json.loads(line) for line in out.read_text().splitlines()]
        reported = [json.loads(line) for line in errors.read_text().splitlines()]
    assert code in (0, 1), printed
    answered = Counter(line_of[record["custom_id"]] for record in written)
    bad = Counter(r["error"]["line"] for r in reported if r["error"] and "line" in r["error"])
    assert set(answered).isdisjoint(bad)
    expected = [n for n, raw in enumerate(raw_lines, 1) if raw.strip()]
    assert sorted((answered + bad).elements()) == expected, printed


def test_a_body_json_cannot_carry_is_a_bad_line_and_the_run_goes_on(tmp_path: Path) -> None:
    # Python's json (used without the speed extra) reads NaN; no server could be sent it.
    lines = [
        {"custom_id": f"id-{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": chat_body(str(n), {"temperature": math_value})}
        for n, math_value in enumerate([0.5, float("nan"), float("inf"), 1.0])
    ]  # fmt: skip
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    code, printed = omc("run", str(source), "-o", str(out), "--errors", str(errors), "--mock")
    assert code == 1, printed
    assert sorted(json.loads(line)["custom_id"] for line in out.read_text().splitlines()) == [
        "id-0",
        "id-3",
    ]
    reported = [json.loads(line)["error"] for line in errors.read_text().splitlines()]
    assert sorted(error["line"] for error in reported) == [2, 3]
