"""Throughput, model FLOP utilisation and memory of Undertone's inference, measured against a plain
``transformers`` pipeline on the same texts and weights (``make bench``, ``make bench-memory``)."""
