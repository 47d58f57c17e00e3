"""Leaderboard of every task's results: `python report.py` (see --help)."""
from common.reporting.report import main

if __name__ == "__main__":
    main()
