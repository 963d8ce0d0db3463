"""The mock OpenAI server, one concept per module.

Nothing is imported here, so that :mod:`.sse` (shared with ``MockTransport``) can be used
without loading aiohttp.web; the server is :class:`.server.MockOpenAIServer`.
"""
