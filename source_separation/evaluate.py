"""Score a separation method on a benchmark's mixtures: `python evaluate.py --help`."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's common/
from common.separation.cli import evaluate_main
from task import TASK

if __name__ == "__main__":
    evaluate_main(TASK)
