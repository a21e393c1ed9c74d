"""The task registry: the only place that knows which tasks exist.

Every task is a folder under `config/` holding a `model_description.json`; the folder's path
relative to `config/` is the task's name (`lol/goldnumber-fraction`, `noscope-coral`, `cifar10`).
Scripts ask this module for task names (including for their `--help` choices) and settings.

Task folders kept outside the repository join the registry through the environment: FOLDEDCNNS_TASKS names
folders (separated by the path separator, ":") laid out as config/ is (util/make_real_tasks.py writes one).
"""
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
TASKS_ENV = "FOLDEDCNNS_TASKS"  # more task folders, laid out as config/
FAMILIES = ("game", "noscope", "cifar")  # the registry's; a user's own CNN and data (train.py --model_file) is "user"
USER = "user"
SPLITS = ("train", "val", "test")  # every task's data splits


@dataclass(frozen=True)
class Task:
    """One specialized-CNN task: its input, architecture parameters and classes."""

    name: str
    family: str
    input_shape: tuple  # (C, H, W) of one image
    architecture: dict
    num_classes: int
    class_names: tuple = ()
    labels: dict = None  # NoScope label rules (positive object, split fractions)
    compound_scaling_baseline: bool = False  # the paper compares this game task with EfficientNet-style scaling
    slow_curriculum_folds: tuple = ()  # folds trained twice as long with a curriculum half as steep
    distill_folded: bool = False  # folded models regress the trained original's logits (CIFAR-10)
    model_file: str | None = None  # family "user": FILE.py:FUNCTION building the original CNN
    data: str | None = None  # family "user": the ImageFolder root holding train/, val/ and test/

    @property
    def label_names(self):
        """Class index -> name in training's order: ImageFolder's sorted class folders (NoScope: 0, 1)."""
        return sorted(self.class_names or [str(k) for k in range(self.num_classes)])

    @property
    def model_map_key(self):
        """This task's key in `config/model_map.json` (NoScope keys use `_`: `noscope_coral`)."""
        return self.name.replace("-", "_", 1) if self.family == "noscope" else self.name

    @property
    def efficientnet_key(self):
        """Key of this task's compound-scaled baseline in `config/model_map.json`."""
        return f"efficientnet-game_{self.name}"


def _load(path, root=CONFIG_DIR):
    desc = json.loads(path.read_text())
    name = path.parent.relative_to(root).as_posix()
    family = desc["family"]
    if family not in FAMILIES:
        raise ValueError(f"{path}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    class_names = tuple(desc.get("class_names", ()))
    num_classes = len(class_names) if class_names else desc["num_classes"]
    return Task(
        name=name,
        family=family,
        input_shape=tuple(desc["input"]),
        architecture=desc["architecture"],
        num_classes=num_classes,
        class_names=class_names,
        labels=desc.get("labels"),
        compound_scaling_baseline=desc.get("compound_scaling_baseline", False),
        slow_curriculum_folds=tuple(desc.get("slow_curriculum_folds", ())),
        distill_folded=desc.get("distill_folded", False),
    )


@lru_cache(maxsize=None)
def all_tasks():
    """All tasks, keyed by name, game tasks first, then NoScope, then CIFAR (the paper's order)."""
    tasks = {}
    for root in task_roots():
        for path in sorted(root.rglob("model_description.json")):
            task = _load(path, root)
            if task.name in tasks:
                raise ValueError(f"{path}: task {task.name} is defined twice (the second in ${TASKS_ENV}); rename "
                                 "its folder")
            tasks[task.name] = task
    return {t.name: t for t in sorted(tasks.values(), key=lambda t: FAMILIES.index(t.family))}


def task_roots():
    """config/, then every folder of $FOLDEDCNNS_TASKS; a ValueError naming one that is not a folder."""
    extra = [Path(p).expanduser() for p in os.environ.get(TASKS_ENV, "").split(os.pathsep) if p]
    missing = [str(p) for p in extra if not p.is_dir()]
    if missing:
        raise ValueError(f"${TASKS_ENV} names {', '.join(missing)}, which is not a folder: fix or unset it")
    return [CONFIG_DIR, *(p.resolve() for p in extra)]


def task_names(family=None):
    """Names of all tasks, or of one family's."""
    return [n for n, t in all_tasks().items() if family is None or t.family == family]


def user_task(name, model_file, data, input_shape, class_names):
    """A task that is not in the registry: a user's own CNN (`model_file`, FILE.py:FUNCTION) on their own ImageFolder
    data (`data`), images of `input_shape` (C, H, W), classes `class_names` (the class folders, sorted)."""
    return Task(name=name, family=USER, input_shape=tuple(input_shape), architecture={},
                num_classes=len(class_names), class_names=tuple(class_names), model_file=model_file,
                data=None if data is None else str(data))


def get_task(name):
    """The task called `name`; a ValueError listing the known tasks otherwise."""
    if isinstance(name, Task):
        return name
    tasks = all_tasks()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(tasks)}")
    return tasks[name]


SYNTHETIC = "synthetic-"


def trained_on(dataset):
    """'(trained on DATASET)', for the line that reports a trained model's output."""
    return f"(trained on {dataset or 'data not recorded in the checkpoint'})"


def stand_in_note(dataset, task):
    """The line that must follow any output of a model trained on `dataset` when that is generated stand-in data
    (synthetic-<task>); "" for real data."""
    if not str(dataset or "").startswith(SYNTHETIC):
        return ""
    return (f"note: this model was trained on generated stand-in data ({dataset}), not real {task} images: what it "
            "says of real images is not a prediction of the task; train on the task's data first (README, Data)")


def resolve_dataset(name):
    """`(task, synthetic)` for a dataset name: a task name, or `synthetic-<task>` for generated data (a Task, such as a
    user's, is its own dataset)."""
    if isinstance(name, Task):
        return name, False
    synthetic = name.startswith(SYNTHETIC)
    try:
        return get_task(name[len(SYNTHETIC):] if synthetic else name), synthetic
    except ValueError:
        raise ValueError(f"unknown dataset {name!r}; choose a task ({', '.join(all_tasks())}) "
                         f"or {SYNTHETIC}<task> for generated stand-in data") from None


def dataset_name(dataset):
    """The name of a dataset given as a name or as a Task (a user's)."""
    return dataset.name if isinstance(dataset, Task) else dataset
