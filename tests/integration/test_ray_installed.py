"""In CI the Ray tests must run, not skip: this fails when the ray extra is missing there.
Marked ``ray`` like them, so it runs in the same pytest pass (scripts/test.sh's second)."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.mark.ray
def test_the_ray_extra_is_installed_where_the_ray_tests_run() -> None:
    if importlib.util.find_spec("ray") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("CI is set, so the Ray tests must run: pip install -e '.[ray]'")
    pytest.skip("the ray extra is not installed: pip install -e '.[ray]'")
