"""Write the real-image benchmark (datasets/real.py): each task's ImageFolder and its config folder.

    pip install -r requirements-real.txt        # scikit-learn and scikit-image: the images they ship
    python3 util/make_real_tasks.py real         # real/data/real/<task>/{train,val,test}/<class>/*.png, real/tasks/...
    export FOLDEDCNNS_TASKS=$PWD/real/tasks      # the tasks join the registry as real/digits, real/photos, ...
    python3 train.py runs --datasets real/photos --data_root real/data --recipe distill --epochs 40

Nothing is downloaded: every image comes from files those packages install. The same seed writes the same images.
OUT/README.md lists each task's source pictures, licences, crop sizes and bands, and its f=1 epochs.
"""
import argparse
import json

from datasets.real import TASK_PREFIX, TASKS, description, sources, task_images, write_images
from util.core.cli import one_line_errors, run_command
from util.core.files import publish, staging_dir, write_text_atomic


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write (it must be new or empty): OUT/data, OUT/tasks, OUT/README.md")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), metavar="TASK",
                        help=f"default: all of {', '.join(TASKS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and crops (default 0)")
    return parser


def readme(tasks, seed):
    """OUT/README.md: how each task was made."""
    lines = ["# The real-image benchmark", "",
             f"Written by `python3 util/make_real_tasks.py OUT --seed {seed}` (datasets/real.py). Every task is a "
             "game-family task (the paper's game CNN) over RGB PNGs; `export FOLDEDCNNS_TASKS=OUT/tasks` adds them "
             "to the registry, `--data_root OUT/data` finds their images.", ""]
    for task in tasks:
        c, h, w = task.input_shape
        lines += [f"## {TASK_PREFIX}{task.name}" + (" (the hold-out: never used for tuning)" if task.holdout else ""),
                  "", f"{task.about}. Input {c}x{h}x{w}, {len(task.class_names)} classes, the original (f=1) "
                  f"trains {task.epochs} epochs.", "", *[f"- {line}" for line in sources(task)], ""]
    return "\n".join(lines)


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    tasks = [TASKS[name] for name in args.tasks]
    with one_line_errors(parser, (ValueError, ImportError),
                         lambda e: f"{e}; install the benchmark's packages: pip install -r requirements-real.txt"
                         if isinstance(e, ImportError) else str(e)):
        tmp = staging_dir(args.out)
        for task in tasks:
            images = task_images(task, args.seed)
            write_images(images, tmp / "data" / TASK_PREFIX / task.name)
            folder = tmp / "tasks" / TASK_PREFIX / task.name
            folder.mkdir(parents=True)
            write_text_atomic(folder / "model_description.json", json.dumps(description(task), indent=1) + "\n")
            counts = ", ".join(f"{len(v)} {k}" for k, v in images.items())
            print(f"{TASK_PREFIX}{task.name}: {counts} images of {len(task.class_names)} classes", flush=True)
        write_text_atomic(tmp / "README.md", readme(tasks, args.seed))
        publish(tmp, args.out)
    print(f"wrote {args.out}: export FOLDEDCNNS_TASKS={args.out}/tasks and pass --data_root {args.out}/data")


if __name__ == "__main__":
    run_command(main)
