"""Score a separation method on a benchmark's mixtures: `python evaluate.py --help`."""
from common.separation.cli import evaluate_main
from task import TASK

if __name__ == "__main__":
    evaluate_main(TASK)
