"""Reporting stage: results in, tables and figures out.

`results` appends rows to results.csv and prints tables, `report` builds
the leaderboard beside the published numbers in `published_numbers.csv`,
`plots` draws figures in a worker process."""
from pathlib import Path

PUBLISHED_TABLE = Path(__file__).with_name("published_numbers.csv")  # one place; importing it loads no torch
