"""The bdbench version, written into every record's provenance (``bdbench_version``)."""

__version__ = "0.1.0"
