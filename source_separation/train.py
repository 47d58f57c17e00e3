"""Learn the NMF method's spectral bases per class: `python train.py --help`."""
from common.separation.cli import train_main
from task import TASK

if __name__ == "__main__":
    train_main(TASK)
