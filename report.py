"""Leaderboard of every task's results: `python report.py` (see --help)."""
from common.report import main

if __name__ == "__main__":
    main()
