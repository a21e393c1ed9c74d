"""Measure the inference throughput of one model configuration (docs/protocol.md, section 5).

One configuration is a task, a mode (original / folded / efficientnet), a fold (phi for the
efficientnet baseline), a batch size in images, a precision, a device and a backend; util/inference.py
says what each backend is and how a batch runs. Before timing, the backend's logits are checked
against eager fp32 PyTorch. Each trial prints one `key=value` line (or a JSON object with --json).

Your own CNN instead of a task's: `--model_file my_models.py:build --input_shape 3 64 64` (build()
returns the original model; f > 1 measures its FoldedCNN, made by models.fold_cnn).
"""
import argparse
import json
from dataclasses import asdict

from config.tasks import task_names
from models import MODES
from util.common import pick_device, positive_int
from util.inference import Benchmark, Config, add_measurement_args, add_user_model_args, fill_protocol


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    parser.add_argument("task", nargs="?", choices=task_names(), metavar="TASK",
                        help="one of: " + ", ".join(task_names()) + " (or --model_file)")
    add_user_model_args(parser)
    parser.add_argument("--mode", choices=MODES, default="folded",
                        help="folded (fold 1 = the original CNN), original, or efficientnet (fold = phi); "
                             "default folded")
    parser.add_argument("--fold", type=positive_int, default=1, help="fold f, or phi for efficientnet; default 1")
    parser.add_argument("--batch_size", type=positive_int, default=1024, help="images per batch; default 1024")
    add_measurement_args(parser)
    parser.add_argument("--trials", type=positive_int, default=1, help="timed trials; default 1")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and random inputs")
    parser.add_argument("--json", action="store_true", help="print JSON objects instead of key=value lines")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if (args.task is None) == (args.model_file is None):
        parser.error("name a TASK or a --model_file, not both")
    mode = ("original" if args.fold == 1 else "folded") if args.model_file else args.mode
    try:
        fill_protocol(args, pick_device(args.device))
        config = Config(args.task or args.model_file, mode, args.fold, args.batch_size, args.backend, args.precision,
                        args.device, args.chunk, not args.nchw, args.compile_mode, args.model_file,
                        args.input_shape and tuple(args.input_shape))
        bench = Benchmark(config, args.warmup, args.seed)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    for trial in range(args.trials):
        result = bench.trial(trial, args.iters, args.min_time)
        print(json.dumps(asdict(result)) if args.json else result.line(), flush=True)


if __name__ == "__main__":
    main()
