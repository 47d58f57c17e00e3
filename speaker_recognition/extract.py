"""Extract pooled embeddings of this task's dataset: `python extract.py --help`."""
from common.cli import extract_main
from task import TASK

if __name__ == "__main__":
    extract_main(TASK)
