"""Classify audio files with a saved probe: `python predict.py --help`."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout's common/
from common.probing.predict import predict_main
from task import TASK

if __name__ == "__main__":
    predict_main(TASK)
