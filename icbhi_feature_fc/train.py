"""Train probes on the stored features: `python train.py --help`."""
from common.cli import train_main
from task import TASK

if __name__ == "__main__":
    train_main(TASK)
