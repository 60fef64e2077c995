"""Reading the labeled dataset whole, although its files carry different task columns.

Each run writes the columns of its own task set (``--tasks``, a config that adds intent and team), so the
files of different dates or sources differ. pyarrow, pandas and DuckDB (without ``union_by_name``) take
one file's schema for the folder and silently drop the columns the other files add.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from schemas.contracts import LABELED_PARTITION_KEYS

LABELED_PARTITIONING = pa.schema([pa.field(key, pa.string()) for key in LABELED_PARTITION_KEYS])
"""The hive partition columns of ``labeled``, as strings (``date`` is ``YYYY-MM-DD``)."""


def labeled_dataset(output: str | Path) -> ds.Dataset:
    """``OUTPUT/labeled`` as one dataset with every column any of its files has.

    The schema unifies every file's own schema, read from the file footers only, so the data is read
    once, when the caller scans it; a column is null in the rows of the files that lack it, and a column
    whose type differs between files raises. ``source`` and ``date`` come from the path.
    """
    dataset = ds.dataset(f"{str(output).rstrip('/')}/labeled", format="parquet",
                         partitioning=ds.partitioning(LABELED_PARTITIONING, flavor="hive"))
    files = [fragment.physical_schema for fragment in dataset.get_fragments()]
    return dataset.replace_schema(pa.unify_schemas([*files, LABELED_PARTITIONING]))
