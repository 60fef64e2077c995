"""Undertone: batch text analytics from raw emails, reviews and posts to labeled Parquet."""

import logging
import os

# No network at run time: models load from local paths only, and Prefect's ephemeral server
# needs longer than its default to start cold on a small machine. Arrow allocates through glibc, so the
# model worker's malloc_trim also returns the Parquet writers' freed row groups (its default, mimalloc,
# kept about 35 MiB more at the peak of a 25,000-document run); it must be set before pyarrow loads.
# bf16 matmuls on CPU run in oneDNN, through PyTorch's ideep, and both keep state per matrix shape, 1,024 shapes
# each by default: oneDNN's compiled kernels (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and ideep's primitives
# (LRU_CACHE_CAPACITY; 0 crashes torch). Length-grouped passes rarely repeat a shape, so the caches only held
# memory: with both at 16, 400 passes of random shapes stay at 504 MiB instead of rising to 781 MiB (either
# cache alone: 766-781), at the same speed. Prefect's client telemetry (DO_NOT_TRACK): on a terminal it prints a
# usage-data notice on a new user's first run and, reporting to a server with analytics on, sends milestone events
# to Amplitude over the network. Users can override any of these.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16",
    "LRU_CACHE_CAPACITY": "16",
}.items():
    os.environ.setdefault(_name, _value)


class _WithoutBeamGcpNotice(logging.Filter):
    """Apache Beam installed without its ``gcp`` extra logs, on the root logger at import, that apitools is missing
    for BigQuery (``apache_beam/io/gcp/internal/clients/bigquery``). Undertone reads and writes no BigQuery, and the
    line, printed before every command's output, reads like an error; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and str(record.msg).startswith("apitools not found"))


logging.getLogger().addFilter(_WithoutBeamGcpNotice())
