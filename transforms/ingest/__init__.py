"""Ingest: find input files, detect their source, parse records into documents."""
