"""Testing a pipeline with a custom_api mock instead of the network, in the style of the
original library's mock test: random latency, random failures, retries, both client kinds."""

from __future__ import annotations

import asyncio
import random

from openai_multi_client import OpenAIMultiClient, OpenAIMultiOrderedClient, Payload


def run(ordered: bool, requests: int = 100) -> int:
    rng = random.Random(42)

    async def mock(payload: Payload) -> dict[str, str]:
        await asyncio.sleep(rng.random() / 20)
        if rng.random() < 0.3:
            raise Exception("Mocked exception")
        return {"response": f"mocked {payload.metadata.get('id')}"}

    cls = OpenAIMultiOrderedClient if ordered else OpenAIMultiClient
    api = cls(custom_api=mock, max_retries=3, retry_multiplier=0.01)

    def put_data() -> None:
        for pid in range(1, requests + 1):
            api.request(
                {"prompt": f"This is test {pid}"}, metadata={"id": pid}, endpoint="completions"
            )

    api.run_request_function(put_data)
    failed = 0
    for count, response in enumerate(api, start=1):
        if response.failed:
            failed += 1
            print(
                f"Failed {response.metadata.get('id')} after {response.attempt} attempts: "
                f"{response.error}; {count}/{requests}"
            )
        else:
            print(f"Got {response.response['response']}: {count}/{requests}")
    print(f"Total failed: {failed}/{requests}")
    return failed


if __name__ == "__main__":
    run(ordered=False)
    run(ordered=True)
