"""The mock's code keeps its shape: no import circles among its modules, and no use of the
client's own parsers (the mock must be able to catch their bugs). Sizes: test_structure.py."""

from __future__ import annotations

from .test_structure import circles, imported, sources

PACKAGE = "openai_multi_client.testing"
# The client's parsing modules, which the mock must not use.
CLIENT_PARSERS = frozenset(
    {"openai_multi_client._sse", "openai_multi_client._stream", "openai_multi_client._headers"}
)


def test_no_import_circles_in_the_testing_package() -> None:
    assert circles(sources(PACKAGE)) == []


def test_the_mock_does_not_use_the_clients_parsers() -> None:
    everything = set(sources())
    users = {
        name: sorted(imported(name, path, tree, everything) & CLIENT_PARSERS)
        for name, (path, tree) in sources(PACKAGE).items()
    }
    assert {name: used for name, used in users.items() if used} == {}
