"""Separate the queried source from mixture files: `python separate.py --help`."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's common/
from common.separation.cli import separate_main
from task import TASK

if __name__ == "__main__":
    separate_main(TASK)
