# The usage example of the original openai-multi-client README, unchanged. It runs against the
# real API, or against the mock server with OPENAI_BASE_URL=http://127.0.0.1:8000/v1 and any
# OPENAI_API_KEY (see tests/integration/test_examples.py).
import os
from openai_multi_client import OpenAIMultiClient

if 'OPENAI_API_KEY' not in os.environ:
    raise Exception("Please set the OPENAI_API_KEY environment variable")

api = OpenAIMultiClient(endpoint="chats", data_template={"model": "gpt-3.5-turbo"})

def make_requests():
    for num in range(1, 10):
        api.request(data={
            "messages": [{"role": "user", "content": f"Can you tell me what is {num} * {num}?"}]
        }, metadata={'num': num})

api.run_request_function(make_requests)

for result in api:
    num = result.metadata['num']
    response = result.response['choices'][0]['message']['content']
    print(f"{num} * {num}:", response)
