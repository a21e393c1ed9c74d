"""The training flags shared by fold_trainer.py (one run), train.py (the sweep) and the commands that train through
the sweep (util/accuracy_table.py, util/recipe_choices.py), and how they become a RunSpec and Options."""
import argparse

from datasets import DATA_DIR
from util.core.cli import add_align_arg, add_device_arg, positive_int
from util.train.loop import AMP_DTYPES
from util.train.protocol import DISTILL_LOSSES, RECIPES, SCHEDULES
from util.train.spec import OVERRIDES
from util.train.trainer import Options


def training_flags(add_help=False):
    """A parser with the flags of how to train (not which run): commands build theirs on it with `parents=`."""
    parser = argparse.ArgumentParser(add_help=add_help)
    parser.add_argument("--mode", choices=("folded", "efficientnet"), default="folded",
                        help="folded (the FoldedCNN; fold 1 = the original CNN) or efficientnet (the compound-scaled "
                             "game baseline of the paper's comparison, fold = phi); default folded")
    parser.add_argument("--multiplier", type=float, default=None, help="internal multiplier (default sqrt(f))")
    add_align_arg(parser)
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: the paper's for the task")
    parser.add_argument("--batch_size", type=positive_int, default=32,
                        help="images per mini-batch, rounded down to a multiple of f (default 32); under "
                             "torchrun, the sum over the processes")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the paper's for the task); on resume it replaces the checkpoint's")
    parser.add_argument("--checkpoint_cycle", type=positive_int, default=1, help="save current.pth every N epochs")
    parser.add_argument("--continue_from_file", default=None, metavar="PATH",
                        help="resume from this checkpoint (train.py: select one dataset and one fold)")
    parser.add_argument("--recipe", choices=RECIPES, default="paper",
                        help="paper (default: the paper's protocol, exactly) or distill (folded runs learn the "
                             "trained original's logits: KL divergence at temperature 4 (slots balanced, game and "
                             "CIFAR), Adam at lr 1e-3, one-cycle "
                             "schedule (constant for NoScope), no curriculum; docs/protocol.md, section 8)")
    parser.add_argument("--teacher", default=None, metavar="PATH",
                        help="trained original model for distillation (folded runs of --recipe distill and of "
                             "CIFAR-10)")
    parser.add_argument("--distill_loss", choices=DISTILL_LOSSES, default=None,
                        help="folded runs: learn the teacher's logits with this loss instead of the recipe's")
    parser.add_argument("--temperature", type=float, default=None, help="folded runs: temperature of the kl losses")
    parser.add_argument("--curriculum", choices=("on", "off"), default=None,
                        help="folded runs: the paper's class curriculum on or off (default: the recipe's)")
    parser.add_argument("--slot_balance", choices=("on", "off"), default=None,
                        help="folded runs: weigh each slot's loss by its size, so a lagging slot learns faster "
                             "(default: the recipe's)")
    parser.add_argument("--optimizer", choices=("adam", "rmsprop"), default=None,
                        help="optimizer instead of the recipe's (weight decay stays the recipe's)")
    parser.add_argument("--lr_schedule", choices=SCHEDULES, default=None,
                        help="learning-rate schedule instead of the recipe's: constant, step (halve every 200 "
                             "epochs), onecycle or cosine (per batch)")
    add_device_arg(parser, default=None)
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="folder of CIFAR and NoScope data (default data/)")
    parser.add_argument("--data_root", default=None, help="folder of the game data (default $DATA_ROOT, then data_root/)")
    parser.add_argument("--download", action="store_true", help="download CIFAR with torchvision if missing")
    parser.add_argument("--val_size", type=positive_int, default=5000,
                        help="CIFAR validation images taken from the training set, plus f - val_size %% f as the "
                             "authors count (default 5000)")
    parser.add_argument("--stream_images", action="store_true",
                        help="read game/NoScope images from disk every epoch instead of holding them in memory")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader workers (default: 0 for images held in memory, else cores - 1, at most 4)")
    parser.add_argument("--amp", nargs="?", const="fp16", default=None, choices=tuple(AMP_DTYPES),
                        help="mixed precision: --amp (or --amp fp16) fp16 autocast with loss scaling, CUDA only; "
                             "--amp bf16 bf16 autocast, on CUDA or a CPU with bf16 instructions; default fp32 "
                             "as the paper")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each run's spec (what it writes to run.json: task, widths, recipe, resolved protocol, "
                             "budget, teacher) as one JSON line and exit (reads no data)")
    parser.add_argument("--seed", type=int, default=19,
                        help="seed of the splits, the evaluation orders and training (default 19, the authors')")
    return parser


def spec_settings(args):
    """The keyword arguments of util.train.spec.build_spec that the training flags in `args` give."""
    return {"mode": args.mode, "multiplier": args.multiplier, "align": args.align, "recipe": args.recipe,
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "teacher": args.teacher,
            "amp": args.amp, "val_size": args.val_size,
            "overrides": {name: getattr(args, name) for name in OVERRIDES}}


def options_from_args(args):
    """The Options (how to carry runs out here) that the training flags in `args` give."""
    return Options(device=args.device, data_dir=args.data_dir, data_root=args.data_root, download=args.download,
                   stream_images=args.stream_images, workers=args.workers, checkpoint_cycle=args.checkpoint_cycle,
                   continue_from_file=args.continue_from_file)
