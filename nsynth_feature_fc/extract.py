"""Extract pooled embeddings of this task's dataset: `python extract.py --help`."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's common/
from common.cli import extract_main
from task import TASK

if __name__ == "__main__":
    extract_main(TASK)
