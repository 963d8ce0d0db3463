"""The mock's answers: one module per endpoint (each with ``answer(body, context)``), and what
they share: the :class:`~.context.Context` of a request, tool calls and structured outputs built
from JSON schemas, logprobs."""
