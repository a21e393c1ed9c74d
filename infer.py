"""Measure the inference throughput of one model configuration (docs/protocol.md, section 5).

One configuration is a task, a mode (original / folded / efficientnet), a fold (phi for the
efficientnet baseline), a batch size in images, a precision, a device and a backend; util/measure/benchmark.py
says what each backend is and how a batch runs. Before timing, the backend's logits are checked
against eager fp32 PyTorch. Each trial prints one `key=value` line (or a JSON object with --json).

`--fold auto` measures f = 1..4 (or --folds) on this device with the chosen backend and precision,
trials interleaved, and names the fastest. `--align N` (beyond the paper) rounds every widened layer
of a FoldedCNN up to a multiple of N.

Your own CNN instead of a task's: `--model_file my_models.py:build --input_shape 3 64 64` (build()
returns the original model; f > 1 measures its FoldedCNN, made by models.fold_cnn).
"""
import argparse
import json
from dataclasses import asdict

from config.tasks import task_names
from models import MODES, mode_of
from util.core.cli import add_align_arg, one_line_errors, positive_int
from util.core.device import pick_device
from util.measure.benchmark import (Benchmark, add_measurement_args, add_user_model_args, config_from_args,
                                    fill_protocol, interleaved_medians)
from util.measure.compare import fastest, speedup_note


def fold_arg(text):
    """argparse type for --fold: a positive integer or auto."""
    return text if text == "auto" else positive_int(text)


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    parser.add_argument("task", nargs="?", choices=task_names(), metavar="TASK",
                        help="one of: " + ", ".join(task_names()) + " (or --model_file)")
    add_user_model_args(parser)
    parser.add_argument("--mode", choices=MODES, default="folded",
                        help="folded (fold 1 = the original CNN), original, or efficientnet (fold = phi); "
                             "default folded")
    parser.add_argument("--fold", type=fold_arg, default=1,
                        help="fold f, or phi for efficientnet, or auto: measure --folds and name the fastest; "
                             "default 1")
    parser.add_argument("--folds", type=positive_int, nargs="+", default=[1, 2, 3, 4],
                        help="the folds --fold auto measures; default 1 2 3 4")
    add_align_arg(parser)
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    add_measurement_args(parser)
    parser.add_argument("--trials", type=positive_int, default=1, help="timed trials; default 1")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and random inputs")
    parser.add_argument("--json", action="store_true", help="print JSON objects instead of key=value lines")
    return parser


def config_for(args, fold):
    mode = mode_of(fold) if args.model_file or args.fold == "auto" else args.mode
    return config_from_args(args, args.task or args.model_file, mode, fold)


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if (args.task is None) == (args.model_file is None):
        parser.error("name a TASK or a --model_file, not both")
    if args.fold == "auto" and args.mode != "folded":
        parser.error(f"--fold auto measures the original and its FoldedCNNs: drop --mode {args.mode}")
    if args.fold != "auto" and args.folds != parser.get_default("folds"):
        parser.error("--folds goes with --fold auto: add --fold auto, or drop --folds")
    if args.align > 1 and args.mode != "folded":
        parser.error(f"--align widens FoldedCNNs: drop it for --mode {args.mode}")
    folds = sorted(set(args.folds)) if args.fold == "auto" else [args.fold]
    with one_line_errors(parser):
        fill_protocol(args, pick_device(args.device))
        benches = {fold: Benchmark(config_for(args, fold), args.warmup, args.seed) for fold in folds}

    def show(_, result):
        print(json.dumps(asdict(result)) if args.json else result.line(), flush=True)

    medians = interleaved_medians(benches, args.trials, args.iters, args.min_time, show)
    if args.fold == "auto":
        best, _ = fastest(medians)
        bench = benches[best]
        summary = {"fastest_fold": best, "images_per_sec": medians, "backend": bench.backend,
                   "precision": args.precision, "device": str(bench.device)}
        if best == 1:
            name = "f=1 (the original)"
        else:
            name = f"f={best}" + speedup_note(medians, best, base_name=f"f=1's {medians.get(1, 0):,.0f}")
        print(json.dumps(summary) if args.json else
              f"fastest: {name} at {medians[best]:,.0f} images/sec (median of {args.trials} trial(s); "
              f"{bench.backend}, {args.precision}, {bench.device}, batch {args.batch_size})")


if __name__ == "__main__":
    main()
