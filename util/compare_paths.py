"""Which way of running a CNN is fastest on this machine: `python3 util/compare_paths.py {eager,backends,align}`
(util/measure/paths.py says what each compares; `--help` on each lists its flags)."""
from util.core.cli import run_command
from util.measure.paths import main

if __name__ == "__main__":
    run_command(main)
