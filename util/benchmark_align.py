"""`python3 util/compare_paths.py align`, under the name it had before 2026-12-07 (results/*/run.sh still call it)."""
import sys

from util.core.cli import run_command
from util.measure import paths


def main(argv=None):
    paths.main(["align", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run_command(main)
