"""Summarise an inference sweep: a markdown table and PNG plots from run_inference.sh's CSV.

Writes, into --out (default: <csv name>-report/ beside the CSV, where the sweep keeps its machine.json):
  report.md       per model x fold: median images/sec over trials, the speed-up over the same
                  model's original (fold 1, or phi 1 for a baseline) and the achieved FLOP/s as a
                  percentage of the machine's measured matmul peak at the precision measured
                  (machine.json)
  throughput.png  median images/sec vs fold, one line per model
  roofline.png    achieved FLOP/s vs arithmetic intensity (ai.py) under the measured peak and
                  memory bandwidth
Without a machine file the table leaves out "% of peak" and the roofline is not drawn.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a command: make the repository importable

from util.common import write_text_atomic  # noqa: E402
from util.results import load, machine_file, markdown, medians, plot_roofline, plot_throughput, report_dir  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="results CSV written by ./run_inference.sh")
    parser.add_argument("--machine", help="peak JSON (util/peak.py); default: <csv name>-report/machine.json")
    parser.add_argument("--out", help="folder for report.md and the plots; default: <csv name>-report/ beside the CSV")
    args = parser.parse_args(argv)
    machine_path = Path(args.machine) if args.machine else machine_file(args.csv)
    out = Path(args.out) if args.out else report_dir(args.csv)
    try:
        if not Path(args.csv).is_file():
            raise ValueError(f"{args.csv} does not exist: run ./run_inference.sh {args.csv} first")
        table = medians(load(args.csv))
        machine = None
        if machine_path.is_file():
            machine = json.loads(machine_path.read_text())
        elif args.machine:
            raise ValueError(f"--machine {args.machine} does not exist: "
                             f"measure it with python3 util/peak.py --out {args.machine}")
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    write_text_atomic(out / "report.md", markdown(table, machine) + "\n")
    plot_throughput(table, out / "throughput.png")
    written = ["report.md", "throughput.png"]
    if machine:
        plot_roofline(table, machine, out / "roofline.png")
        written.append("roofline.png")
    print("wrote " + ", ".join(str(out / w) for w in written))


if __name__ == "__main__":
    main()
