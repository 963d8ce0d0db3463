"""The OpenAI Batch API (half the online price): split, upload, create, poll, download.

``records`` plain records a journal can commit; ``split`` batch files from input; ``http`` the
Files and Batches endpoints; ``outcome`` what an output line means; ``job`` one submission's
batches polled to the end; ``client`` the async face; ``sync`` the blocking face; ``prices``
the batch price table.
"""

from .client import AsyncBatchClient
from .job import BatchJob
from .outcome import BatchResult
from .records import BatchChunk, BatchInfo, BatchProblem, UploadedFile
from .sync import BatchClient, SyncBatchJob

__all__ = [
    "AsyncBatchClient",
    "BatchChunk",
    "BatchClient",
    "BatchInfo",
    "BatchJob",
    "BatchProblem",
    "BatchResult",
    "SyncBatchJob",
    "UploadedFile",
]
