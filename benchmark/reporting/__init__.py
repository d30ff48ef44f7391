"""Reporting: leaderboard tables, the run summary, the HTML page, plots and the files written
from ``records.jsonl``. Imports the base only (no torch): records in, files out."""
