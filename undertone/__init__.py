"""Undertone: batch text analytics from raw emails, reviews and posts to labeled Parquet."""

import os

# No network at run time: models load from local paths only, and Prefect's ephemeral server
# needs longer than its default to start cold on a small machine. Users can override any of these.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_name, _value)
