"""Run all six tasks and print the results table: `python run_benchmark.py --demo` (see --help)."""
from common.benchmark import main

if __name__ == "__main__":
    main()
