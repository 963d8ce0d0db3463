"""The answer of ``/images/generations``: ``n`` copies of a 1x1 PNG, as URLs on the mock
server or as base64."""

from __future__ import annotations

import base64
import time
from typing import Any, Final

from .context import Context

# A valid 1x1 PNG, the mock's only image.
PNG_B64: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
    "kgAAAABJRU5ErkJggg=="
)
PNG: Final = base64.b64decode(PNG_B64)
#: Where the server serves the image behind every URL it gives.
IMAGE_PATH: Final = "/mock/images/{name}"


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    response_format = body.get("response_format")
    if response_format is None:
        response_format = "b64_json" if context.model.startswith("gpt-image") else "url"
    data: list[dict[str, Any]] = []
    for index in range(context.plan.n):
        if response_format == "b64_json":
            data.append({"b64_json": PNG_B64})
        else:
            name = f"{context.sequence:08x}-{index}.png"
            data.append({"url": context.url + IMAGE_PATH.format(name=name)})
    return {"created": int(time.time()), "data": data}
