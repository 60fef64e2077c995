"""Prefect flows: thin orchestration over the Beam pipeline and the model recipes."""
