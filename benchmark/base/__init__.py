"""Layer 1, the base: errors, content hashing, metric definitions, cost measurement, the record
schema, the records file and provenance. Imports nothing else of bdbench."""
