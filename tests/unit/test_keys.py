"""Keys and the key pool: choice by headroom, cool-down, retirement, learning, statistics."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from openai_multi_client import ConfigurationError, Key
from openai_multi_client._limits import KeyPool, Reservation, as_keys

SECRET = "sk-proj-secret-0123456789"
LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "600",
    "x-ratelimit-remaining-requests": "599",
    "x-ratelimit-reset-requests": "100ms",
    "x-ratelimit-limit-tokens": "60000",
    "x-ratelimit-remaining-tokens": "59990",
    "x-ratelimit-reset-tokens": "10ms",
}


def reserve(pool: KeyPool, now: float, tokens: int = 0) -> Reservation:
    reservation = pool.reserve(tokens, now)
    assert isinstance(reservation, Reservation), reservation
    return reservation


def test_a_key_never_shows_its_secret() -> None:
    key = Key(SECRET, requests_per_minute=60)
    assert SECRET not in repr(key)
    assert SECRET not in str(key)
    assert key.id.startswith("key-")
    assert key.redact(f"bad key {SECRET}!") == f"bad key {key.id}!"
    assert Key(SECRET, name="team-a").id == "team-a"
    with pytest.raises(ConfigurationError, match="name"):
        Key(SECRET, name=f"my {SECRET}")
    pool = KeyPool([key])
    assert SECRET not in repr(pool)
    assert SECRET not in repr(pool.statistics(0.0))


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -1}, "tokens_per_minute"),
        ({"tokens_per_minute": math.inf}, "tokens_per_minute"),
        ({"weight": 0}, "weight"),
    ],
)
def test_bad_key_options(options: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Key(SECRET, **options)  # type: ignore[arg-type]


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        as_keys(["sk-a", "sk-a"])


def test_the_key_with_most_headroom_wins() -> None:
    busy = Key("sk-busy", requests_per_minute=600)
    idle = Key("sk-idle", requests_per_minute=600)
    pool = KeyPool([busy, idle])
    for _ in range(5):
        assert reserve(pool, 0.0).key in (busy, idle)
    # Load spreads: each key took some; after that the emptier key is chosen.
    stats = {k.key: k.requests for k in pool.statistics(0.0).keys}
    assert stats[busy.id] + stats[idle.id] == 5
    assert abs(stats[busy.id] - stats[idle.id]) <= 1


def test_weight_shifts_the_share() -> None:
    heavy = Key("sk-heavy", requests_per_minute=6000, weight=3)
    light = Key("sk-light", requests_per_minute=6000, weight=1)
    pool = KeyPool([heavy, light])
    chosen = [reserve(pool, 0.0).key for _ in range(40)]
    assert chosen.count(heavy) > chosen.count(light) * 2


def test_keys_are_paced_and_the_pool_says_when_to_come_back() -> None:
    pool = KeyPool([Key("sk-a", requests_per_minute=120), Key("sk-b", requests_per_minute=120)])
    reserve(pool, 0.0)
    reserve(pool, 0.0)
    reserve(pool, 0.0)
    reserve(pool, 0.0)
    assert pool.reserve(0, 0.0) == pytest.approx(1.0)  # both keys full until t = 1 s
    reserve(pool, 1.0)


def test_cool_down_affects_only_that_key() -> None:
    a, b = Key("sk-a"), Key("sk-b")
    pool = KeyPool([a, b])
    pool.cool_down(a, until=10.0)
    assert all(reserve(pool, 1.0).key is b for _ in range(5))
    assert pool.statistics(1.0).cooling == 1
    assert reserve(pool, 10.0).key in (a, b)
    pool.cool_down(b, until=20.0)
    pool.cool_down(a, until=15.0)
    assert pool.reserve(0, 12.0) == pytest.approx(15.0)


def test_retired_keys_are_never_used_again() -> None:
    a, b = Key("sk-a"), Key("sk-b")
    pool = KeyPool([a, b])
    pool.retire(a, "HTTP 401 for sk-a")
    assert all(reserve(pool, 0.0).key is b for _ in range(5))
    pool.retire(b, "HTTP 429 insufficient_quota")
    assert pool.exhausted
    assert pool.reserve(0, 0.0) is None
    reasons = pool.retired_reasons()
    assert "sk-a" not in reasons[a.id]  # the reason is redacted too
    stats = pool.statistics(0.0)
    assert (stats.retired, stats.active) == (2, 0)
    assert stats.keys[0].state == "retired"


def test_a_key_learns_its_limits_from_its_first_response() -> None:
    key = Key("sk-a")
    pool = KeyPool([key], concurrency=50)
    first = reserve(pool, 0.0, tokens=10)
    # Until the first response, the key sends one request at a time.
    assert pool.reserve(10, 0.0) == math.inf
    pool.release(first, 0.1, headers=LIMIT_HEADERS, used_tokens=8)
    stats = pool.statistics(0.1).keys[0]
    assert stats.requests_per_minute == 600
    assert stats.tokens_per_minute == 60000
    assert stats.limits_learned
    assert stats.concurrency_limit is None  # paced by the published limits instead
    for _ in range(9):  # 10 a second, the probe included
        reserve(pool, 0.1)
    assert pool.reserve(0, 0.1) == pytest.approx(1.1)


def test_a_server_without_headers_gets_adaptive_concurrency() -> None:
    pool = KeyPool([Key.keyless()], concurrency=8)
    first = reserve(pool, 0.0)
    pool.release(first, 0.1, headers={})
    # Slow start: each success adds one, so the limit doubles every round trip.
    held = [reserve(pool, 0.1) for _ in range(2)]
    assert pool.reserve(0, 0.1) == math.inf
    for reservation in held:
        pool.release(reservation, 0.2, headers={})
    held = [reserve(pool, 0.2) for _ in range(4)]
    assert pool.reserve(0, 0.2) == math.inf
    pool.release(held.pop(), 0.3, overloaded=True, failed=True)  # a 503
    assert pool.statistics(0.3).keys[0].concurrency_limit == 2
    assert pool.reserve(0, 0.3) == math.inf  # 3 in flight, 2 allowed


def test_configured_limits_win_over_headers_and_need_no_probe() -> None:
    key = Key("sk-a", requests_per_minute=60)
    pool = KeyPool([key], concurrency=50)
    first = reserve(pool, 0.0)
    pool.release(first, 0.1, headers=LIMIT_HEADERS)
    assert pool.statistics(0.1).keys[0].requests_per_minute == 60


def test_refund_from_usage() -> None:
    pool = KeyPool([Key("sk-a", tokens_per_minute=600)])
    reservation = reserve(pool, 0.0, tokens=10)
    assert isinstance(pool.reserve(1, 0.0), float)
    pool.release(reservation, 0.1, used_tokens=4)
    reserve(pool, 0.1, tokens=6)
    assert pool.statistics(0.1).tokens == 10


def test_largest_cost() -> None:
    pool = KeyPool([Key("sk-a", tokens_per_minute=1000), Key("sk-b", tokens_per_minute=5000)])
    assert pool.largest_cost() == 5000
    assert math.isinf(KeyPool([Key("sk-a")]).largest_cost())


BLANKS = ["", "   ", "\t\n", "...", " ... "]


@pytest.mark.parametrize("secret", BLANKS)
def test_empty_blank_and_placeholder_keys_are_refused(secret: str) -> None:
    from openai_multi_client import AsyncMultiClient, KeyManager, OpenAIMultiClient

    calls: list[Callable[[], object]] = [
        lambda: Key(secret),
        lambda: as_keys(["sk-good-key-1", secret]),
        lambda: KeyManager(["sk-good-key-1", secret]),
        lambda: KeyManager([secret, ...]),
        lambda: AsyncMultiClient(endpoint="chats", api_key=["sk-good-key-1", secret]),
        lambda: OpenAIMultiClient(endpoint="chats", api_key=[secret]),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError) as caught:
            call()
        message = str(caught.value)
        assert "placeholder" in message or "empty" in message or "whitespace" in message
        if secret.strip():
            assert "'...'" in message  # names the placeholder, nothing else
    with pytest.raises(ConfigurationError, match="API key 1 is"):
        as_keys(["sk-good-key-1", secret])


def test_an_empty_key_alone_means_no_key_only_for_a_local_server() -> None:
    from openai_multi_client import AsyncMultiClient

    local = AsyncMultiClient(endpoint="chats", api_key="", base_url="http://127.0.0.1:9/v1")
    assert local.statistics().keys.keys[0].key == Key.keyless().id
    assert Key.keyless().auth_headers() == {}
    for blank in ("", "  "):
        with pytest.raises(ConfigurationError, match=r"no API key.*empty"):
            AsyncMultiClient(endpoint="chats", api_key=blank)
    with pytest.raises(ConfigurationError, match="placeholder"):
        AsyncMultiClient(endpoint="chats", api_key="...", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(
    ("secret", "shortest"),
    [
        ("sk-CANARY1234567890abcdef", "sk-CANARY12"),  # "sk-" and 8 characters
        ("sk-proj-Abc123def456ghi789", "sk-proj-Abc123de"),  # the type prefix is "sk-proj-"
        ("0123456789abcdef0123456789abcdef", "01234567"),  # no type prefix (Azure)
    ],
)
def test_the_start_of_a_key_is_redacted_but_not_less(secret: str, shortest: str) -> None:
    key = Key(secret)
    for length in range(len(shortest), len(secret) + 1):
        fragment = secret[:length]
        assert key.redact(f"partial {fragment}.") == f"partial {key.id}."
        assert key.redact_bytes(f'"{fragment}"'.encode()) == f'"{key.id}"'.encode()
    too_short = secret[: len(shortest) - 1]
    assert key.redact(f"partial {too_short}.") == f"partial {too_short}."
    ordinary = "Incorrect API key provided: sk-... You can find your API key at sk-proj- pages."
    assert key.redact(ordinary) == ordinary
    twice = f"{secret[:20]}x and {secret}"
    assert key.redact(twice) == f"{key.id}x and {key.id}"


def test_a_short_key_is_only_redacted_whole() -> None:
    key = Key("sk-a1")
    assert key.redact("sk-a1 sk-a sk-") == f"{key.id} sk-a sk-"
