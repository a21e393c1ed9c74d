"""Train one FoldedCNN (dataset, fold) with the paper's protocol (docs/protocol.md, section 3), or with
--recipe distill as a student of the trained original (section 8).

Every epoch trains, then validates and tests. It writes, in --savedir: `run.json` (the run's resolved
specification, what --dry_run prints) when it starts, one stats file per split and metric
(`stats/<split>_<metric>.txt`, one line appended per epoch), `current.pth` every --checkpoint_cycle epochs,
`best.pth` on a better validation top-1, and `result.json` when the run is finished. A run continues from a
checkpoint with --continue_from_file.

Your own CNN instead of a task: `--model_file my_models.py:build --data my_images` (train.py --help; --recipe
distill by default, its folded runs taught by --teacher, the f=1 run's best.pth, or --weights).

Under `torchrun --nproc_per_node N fold_trainer.py ...` it trains with DistributedDataParallel: each
rank trains on its own 1/N of every epoch's images, in batches of --batch_size / N (a multiple of
f); training metrics are summed over the ranks; rank 0 alone validates, tests and writes files.
"""
import argparse
import json

from datasets import DataMissing
from util.core.cli import one_line_errors, positive_int, run_command
from util.train import distributed
from util.train.flags import options_from_args, spec_settings, training_flags, user_task_from_args
from util.train.spec import build_spec
from util.train.trainer import error_message, train


def get_args_parser(add_help=True):
    """The flags naming the run (--dataset, --fold, --savedir) and the shared training flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[training_flags()], add_help=add_help)
    parser.add_argument("--dataset", default=None,
                        help="a task name (python3 train.py --help lists them) or synthetic-<task>; or give "
                             "--model_file and --data")
    parser.add_argument("--fold", type=positive_int, default=1,
                        help="fold factor f (default 1: the original CNN); phi with --mode efficientnet")
    parser.add_argument("--savedir", required=True, help="run directory for checkpoints and stats")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if (args.dataset is None) == (args.model_file is None):
        parser.error("give --dataset, or --model_file and --data for your own CNN (one of them)")
    with one_line_errors(parser, (ValueError, DataMissing, FloatingPointError), error_message):
        own = user_task_from_args(args)
        args.recipe = args.recipe or ("distill" if own else "paper")
        spec = build_spec(own or args.dataset, args.fold, args.savedir, **spec_settings(args))
        if args.dry_run:
            print(json.dumps(spec.describe()))
            return
        result = train(spec, options_from_args(args))
    if distributed.is_main():
        print(json.dumps(result))
    distributed.cleanup()


if __name__ == "__main__":
    run_command(main, "the run's last finished epoch is kept in --savedir: add --continue_from_file SAVEDIR/current.pth "
                      "to the same command to resume", "add --continue_from_file SAVEDIR/current.pth to the same command "
                      "to resume")
