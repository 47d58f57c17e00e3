"""Separate the queried source from mixture files: `python separate.py --help`."""
from common.separation.cli import separate_main
from task import TASK

if __name__ == "__main__":
    separate_main(TASK)
