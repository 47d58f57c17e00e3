"""Classify audio files with a saved probe: `python predict.py --help`."""
from common.predict import predict_main
from task import TASK

if __name__ == "__main__":
    predict_main(TASK)
