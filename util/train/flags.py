"""The training flags shared by fold_trainer.py (one run), train.py (the sweep) and the commands that train through
the sweep (util/accuracy_table.py, util/recipe_choices.py), and how they become a RunSpec and Options."""
import argparse
import os
import re
from pathlib import Path

from config.tasks import all_tasks, user_task
from datasets import DATA_DIR
from datasets.folder import scan_image_folder
from models.user import absolute_model_file, checked_model, load_weights
from util.core.cli import add_align_arg, add_device_arg, float_between, non_negative_int, positive_int
from util.core.device import pick_device
from util.train.loop import AMP_DTYPES
from util.train.protocol import DISTILL_LOSSES, INITS, RECIPES, SCHEDULES
from util.train.spec import OVERRIDES
from util.train.trainer import Options, fast_amp


def training_flags(add_help=False):
    """A parser with the flags of how to train (not which run): commands build theirs on it with `parents=`."""
    parser = argparse.ArgumentParser(add_help=add_help)
    parser.add_argument("--mode", choices=("folded", "efficientnet"), default="folded",
                        help="folded (the FoldedCNN; fold 1 = the original CNN) or efficientnet (the compound-scaled "
                             "game baseline of the paper's comparison, fold = phi); default folded")
    parser.add_argument("--multiplier", type=float, default=None, help="internal multiplier (default sqrt(f))")
    add_align_arg(parser)
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="train.py: the original's (f=1) epochs, and those of --recipe paper's folded runs; "
                             "--recipe distill's folded students train the recipe's multiple of them (3x; 1.2x for "
                             "NoScope), or as many as fit in 1.8x the original's training seconds here where fewer "
                             "do (timed when a student starts), unless --student_epochs says otherwise. "
                             "fold_trainer.py: this run's epochs. "
                             "Default: the paper's for the task; 30 for --model_file")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="images per mini-batch, rounded down to a multiple of f (default: the recipe's, 32 for "
                             "the paper's); under torchrun, the sum over the processes")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the paper's for the task); on resume it replaces the checkpoint's")
    parser.add_argument("--checkpoint_cycle", type=positive_int, default=1, help="save current.pth every N epochs")
    parser.add_argument("--continue_from_file", default=None, metavar="PATH",
                        help="resume from this checkpoint (train.py: select one dataset and one fold)")
    parser.add_argument("--recipe", choices=RECIPES, default=None,
                        help="paper (default for the registry's tasks: the paper's protocol, exactly; for --model_file "
                             "the game tasks') or distill (default for --model_file and --demo; folded runs learn the "
                             "trained original's logits: KL divergence at temperature 4; game and CIFAR: averaged with "
                             "cross-entropy, slots balanced, 32 folded inputs per batch, Adam at lr 1e-3 x sqrt(f), "
                             "one-cycle schedule, weights averaged (--ema 0.99); game and your own CNN's students "
                             "train with BatchNorm folded into their convs when saved (--batchnorm on), game "
                             "students at f >= 4 start from their teacher (--init teacher); NoScope: 32 images, lr 1e-3 "
                             "constant, images shifted by up to 12 pixels, layers centred on data; no curriculum; "
                             "docs/protocol.md, section 8)")
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
    parser.add_argument("--repeat", type=float_between(0, 1), default=None, metavar="SHARE",
                        help="folded runs: slot curriculum, this share (0-1) of folded groups carries one image in "
                             "every slot at the start, falling to none halfway through (default: the recipe's)")
    parser.add_argument("--mixup", type=float_between(0), default=None, metavar="ALPHA",
                        help="folded runs: mixup between folded groups with Beta(ALPHA, ALPHA), the teacher's logits "
                             "mixed alike (0: off; default: the recipe's)")
    parser.add_argument("--shift", type=non_negative_int, default=None, metavar="PIXELS",
                        help="folded runs: augment, each training image moved by up to PIXELS each way (edges "
                             "repeated; default: the recipe's)")
    parser.add_argument("--consistent", choices=("on", "off"), default=None,
                        help="distilled runs: the teacher computes the targets on the augmented images the student "
                             "sees (shift, mixup), in each training step, instead of its cached logits of the plain "
                             "images (default: the recipe's)")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="folded runs: start from fresh weights; from the teacher (--recipe distill: every slot "
                             "reads a copy of the trained original, block-diagonally; models/warm_start.py); or "
                             "fresh weights centred on training images (each hidden layer's outputs mean 0, std 1; "
                             "models/init.py); or separate: fresh weights with every slot in its own block of "
                             "channels, nothing crossing between slots at the start (models/warm_start.py); "
                             "default: the recipe's")
    parser.add_argument("--batchnorm", choices=("on", "off"), default=None,
                        help="folded runs: train with a BatchNorm after every convolution that has a bias, folded "
                             "into that convolution when the weights are saved (best.pth keeps the model's own "
                             "architecture; models/batchnorm.py); default: the recipe's")
    parser.add_argument("--ema", type=float_between(0, 0.9999), default=None, metavar="DECAY",
                        help="folded runs: validate, test and save an exponential moving average of the weights, "
                             "DECAY per step (0: off; default: the recipe's)")
    parser.add_argument("--weight_decay", type=float_between(0), default=None,
                        help="weight decay instead of the recipe's")
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
    parser.add_argument("--nchw", action="store_true",
                        help="train in PyTorch's default NCHW memory format on a CPU too (the default there is "
                             "channels-last: the same fp32 math and faster steps, util/step_rate.py measures them; on "
                             "CUDA NCHW is the default)")
    parser.add_argument("--amp", nargs="?", const="fp16", default=None, choices=("fp32", *AMP_DTYPES),
                        help="precision: --amp (or --amp fp16) fp16 autocast with loss scaling, CUDA only; --amp bf16 "
                             "bf16 autocast, on CUDA or a CPU with bf16 instructions (AVX-512 BF16, AMX); --amp fp32. "
                             "Default: fp32 (the paper's), except the folded students of --recipe distill on a CPU with bf16 "
                             "instructions: bf16 (run.json says which and why; on CUDA fp32, which steps these CNNs "
                             "faster)")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each run's spec (what it writes to run.json: task, widths, recipe, resolved protocol, "
                             "budget, teacher) as one JSON line and exit (trains nothing, writes nothing; reads no "
                             "images, except that a --data folder is checked)")
    parser.add_argument("--seed", type=int, default=19,
                        help="seed of the splits, the evaluation orders and training (default 19, the authors')")
    own = parser.add_argument_group("your own CNN on your own images (instead of a registry task)")
    own.add_argument("--model_file", metavar="FILE.py:FUNCTION", default=None,
                     help="FUNCTION() in FILE.py returns your original CNN, (N, C, H, W) images -> (N, K) logits "
                          "(the file is run as Python code); folds > 1 train its FoldedCNN (models.fold_cnn)")
    own.add_argument("--data", metavar="DIR", default=None,
                     help="your images: DIR/{train,val,test}/<class>/*.png (or .jpg ...), the same class folders in "
                          "each split; classes, K and C H W come from it")
    own.add_argument("--input_shape", nargs=3, type=positive_int, metavar=("C", "H", "W"), default=None,
                     help="the shape images are read at (C 1 or 3; others are resized to H x W); default: the "
                          "images' (C 1 when all are grayscale, H x W the most common size)")
    own.add_argument("--name", default=None, help="the run's name (default: the --data folder's name)")
    own.add_argument("--weights", metavar="ORIGINAL.pth", default=None,
                     help="your trained original (torch.save(model.state_dict(), path)): f=1 is evaluated instead "
                          "of trained, and it teaches the folded models")
    return parser


def user_task_from_args(args):
    """The task of --model_file and --data (None without them), checked before anything is written: the data's
    layout, the model's input shape and logits, and --weights; says once what it found in the data."""
    own = {"--model_file": args.model_file, "--data": args.data, "--input_shape": args.input_shape,
           "--name": args.name, "--weights": args.weights}
    if not any(own.values()):
        return None
    if not (args.model_file and args.data):
        given = " ".join(flag for flag, value in own.items() if value)
        raise ValueError(f"{given}: your own CNN needs both --model_file FILE.py:FUNCTION and --data DIR")
    folder = scan_image_folder(args.data, args.input_shape)
    model = checked_model(args.model_file, folder.input_shape, len(folder.class_names))
    if args.weights:
        load_weights(model, args.weights, args.model_file)
    largest = max(getattr(args, "folds", None) or [getattr(args, "fold", 1)])
    for split, count in folder.images.items():
        if count < largest:
            raise ValueError(f"--data {args.data}: {split}/ holds {count} images, fewer than the fold {largest} (a "
                             f"folded input takes {largest} images): add images or drop fold {largest}")
    name = args.name or Path(args.data).resolve().name
    if not re.fullmatch(r"[\w.-]+", name) or name in all_tasks():
        raise ValueError(f"the run's name {name!r} " + ("is a registry task's" if name in all_tasks() else
                         "is not a plain folder name") + ": pass --name NAME (letters, digits, . _ -)")
    if os.environ.get("RANK", "0") == "0":
        print(folder.describe(), flush=True)
    return user_task(name, absolute_model_file(args.model_file), Path(args.data).resolve(), folder.input_shape,
                     folder.class_names)


def spec_settings(args):
    """The keyword arguments of util.train.spec.build_spec that the training flags in `args` give (with the fast
    precision of the device the run will use)."""
    return {"mode": args.mode, "multiplier": args.multiplier, "align": args.align, "recipe": args.recipe or "paper",
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
            "teacher": args.teacher or args.weights,  # a user's trained original (--weights) teaches
            "amp": args.amp, "fast_amp": fast_amp(pick_device(args.device)), "val_size": args.val_size,
            "weights": args.weights,
            "overrides": {name: getattr(args, name) for name in OVERRIDES}}


def options_from_args(args):
    """The Options (how to carry runs out here) that the training flags in `args` give."""
    return Options(device=args.device, data_dir=args.data_dir, data_root=args.data_root, download=args.download,
                   stream_images=args.stream_images, workers=args.workers, checkpoint_cycle=args.checkpoint_cycle,
                   continue_from_file=args.continue_from_file, channels_last=False if args.nchw else None)
