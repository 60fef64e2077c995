"""Prefect flows: thin orchestration over the Beam pipeline and the model recipes.

A Prefect worker loads a deployment's entrypoint (``flows/daily.py:daily_flow``) as a file, never through the
``undertone`` command, so this package sets the process defaults that ``undertone`` sets (offline model loading,
Arrow on glibc, oneDNN's per-shape caches capped) before a flow module loads pyarrow or torch.
"""

import undertone  # noqa: F401 - process defaults before pyarrow, torch and transformers load
