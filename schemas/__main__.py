"""Print the field tables of every contract (the body of schemas/README.md)."""

from schemas.aggregates import AGGREGATES_SCHEMA
from schemas.contracts import DEAD_LETTER_SCHEMA, DOCUMENT_SCHEMA, LABELED_SCHEMA, describe

if __name__ == "__main__":
    print("\n\n".join(describe(schema) for schema in (DOCUMENT_SCHEMA, LABELED_SCHEMA, DEAD_LETTER_SCHEMA,
                                                         AGGREGATES_SCHEMA)))
