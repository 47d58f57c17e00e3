"""Learn the NMF method's spectral bases per class: `python train.py --help`."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's common/
from common.separation.cli import train_main
from task import TASK

if __name__ == "__main__":
    train_main(TASK)
