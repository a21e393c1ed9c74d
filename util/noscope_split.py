"""Label NoScope frames and split them into `OUTDIR/{train,val,test}/{0,1}/<frame>.png`.

Usage:
  python3 util/noscope_split.py TASK OUTDIR --infile CSV --indir FRAMES   (frames saved by noscope_video_save.py)
  python3 util/noscope_split.py TASK OUTDIR --infile CSV --video VIDEO    (straight from the video)

A frame is class 1 if the task's positive object (e.g. `person` for noscope-coral) has a row in
NoScope's label CSV for that frame, else class 0. The frames [0, n_frames) are cut into
consecutive chunks of int(n_frames * split_fraction) frames; chunk `train_split_index` is train,
the next val, the next test (the rules in config/<task>/model_description.json). The output is
built in a temporary sibling folder and renamed to OUTDIR at the end.

`--video` decodes the video once, sequentially, resizes only the frames the splits need to 50x50
(nearest neighbour, exactly as noscope_video_save.py) and stops after the test chunk; the tree
is identical to the two-step route's.
"""
import argparse
import re
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
from tqdm import tqdm

from config.tasks import SPLITS, Task, resolve_dataset, task_names
from util.noscope_video_save import frame_count, open_video, publish, resize_frame, staging_dir, write_png

FRAME_NAME = re.compile(r"^(\d+)\.png$")


def noscope_task(name):
    """The NoScope task `name` (a `synthetic-` prefix is dropped); a ValueError listing the choices."""
    name = name.name if isinstance(name, Task) else str(name)
    choices = ", ".join(task_names("noscope"))
    try:
        task, _ = resolve_dataset(name)
    except ValueError:
        raise ValueError(f"unknown task {name!r}; choose a NoScope task: {choices}") from None
    if task.family != "noscope":
        raise ValueError(f"{name} is a {task.family} task, not a NoScope task; choose one of: {choices}")
    return task


def label_frames(csv_path, positive_object, n_frames):
    """Per-frame labels for frames 0..n_frames-1: 1 if `positive_object` has a row for the frame.

    Only rows whose `object_name` is `positive_object` count; other objects (and frames beyond
    n_frames) are ignored.
    """
    csv_path = Path(csv_path)
    try:
        header = pd.read_csv(csv_path, nrows=0).columns
    except FileNotFoundError:
        raise ValueError(f"label CSV {csv_path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"label CSV {csv_path} is a folder; pass the CSV file inside it") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"label CSV {csv_path} is empty") from None
    for column in ("frame", "object_name"):
        if column not in header:
            raise ValueError(f"label CSV {csv_path} has no {column!r} column (columns: {', '.join(map(str, header))})")
    rows = pd.read_csv(csv_path, usecols=["frame", "object_name"], dtype={"object_name": str})
    frames = pd.to_numeric(rows["frame"], errors="coerce")
    if frames.isna().any() or (frames != frames.round()).any():
        bad = rows["frame"][frames.isna() | (frames != frames.round())].iloc[0]
        raise ValueError(f"label CSV {csv_path}: frame {bad!r} is not a frame index")
    hits = frames[rows["object_name"].str.strip() == positive_object].to_numpy(dtype=np.int64)
    labels = np.zeros(n_frames, dtype=np.int64)
    labels[hits[(hits >= 0) & (hits < n_frames)]] = 1
    return labels.tolist()


def split_ranges(n_frames, split_fraction, train_split_index):
    """`{"train": range, "val": range, "test": range}`: chunks train_split_index, +1 and +2.

    Chunks are int(n_frames * split_fraction) consecutive frames; a ValueError if that is 0 or
    the test chunk would end beyond the last frame.
    """
    chunk = int(n_frames * split_fraction)
    if chunk < 1:
        raise ValueError(f"{n_frames} frames are too few: a split of fraction {split_fraction} would be empty")
    ranges = {split: range((train_split_index + k) * chunk, (train_split_index + k + 1) * chunk)
              for k, split in enumerate(SPLITS)}
    if ranges["test"].stop > n_frames:
        raise ValueError(f"the test split (frames {ranges['test'].start}-{ranges['test'].stop - 1}, chunk "
                         f"{train_split_index + 2} of {chunk} frames) falls beyond the last frame ({n_frames - 1})")
    return ranges


def _rules(task):
    task = noscope_task(task)
    rules = task.labels
    return task, rules["positive_object"], rules["split_fraction"], rules["train_split_index"]


def _make_class_dirs(tmp):
    for split in SPLITS:
        for label in ("0", "1"):
            (tmp / split / label).mkdir(parents=True)


def _destinations(ranges, labels):
    """`{frame: relative path}` of every frame the splits need, in frame order."""
    return {frame: Path(split) / str(labels[frame]) / f"{frame}.png"
            for split in SPLITS for frame in ranges[split]}


def split_from_frames(task, outdir, infile, indir):
    """Split the frames in `indir` (`<index>.png`, from noscope_video_save.py) into `outdir`; return it.

    n_frames is the number of `<index>.png` files in `indir`.
    """
    task, positive, fraction, index = _rules(task)
    indir, outdir = Path(indir), Path(outdir)
    if not indir.is_dir():
        raise ValueError(f"frames folder {indir} does not exist")
    n_frames = sum(1 for p in indir.iterdir() if FRAME_NAME.match(p.name))
    if n_frames == 0:
        raise ValueError(f"frames folder {indir} holds no <frame index>.png files")
    ranges = split_ranges(n_frames, fraction, index)
    labels = label_frames(infile, positive, n_frames)
    wanted = _destinations(ranges, labels)
    missing = next((f for f in wanted if not (indir / f"{f}.png").is_file()), None)
    if missing is not None:
        raise ValueError(f"frames folder {indir} has {n_frames} frames but no {missing}.png: "
                         f"frames must be numbered 0..{n_frames - 1}")
    tmp = staging_dir(outdir)
    try:
        _make_class_dirs(tmp)
        for frame, rel in tqdm(wanted.items(), desc=f"{task.name} splits", unit="frame"):
            shutil.copyfile(indir / f"{frame}.png", tmp / rel)
        publish(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outdir


def split_from_video(task, outdir, infile, video):
    """Split straight from `video` into `outdir`; return it.

    Decodes sequentially, writes only the frames of the three splits (50x50, nearest) and stops
    after the test chunk. n_frames is the container's frame count.
    """
    task, positive, fraction, index = _rules(task)
    outdir = Path(outdir)
    cap = open_video(video)
    try:
        n_frames = frame_count(cap)
        if n_frames == 0:
            raise ValueError(f"video {video} reports no frame count; save its frames with "
                             f"util/noscope_video_save.py and use --indir")
        ranges = split_ranges(n_frames, fraction, index)
        labels = label_frames(infile, positive, n_frames)
        wanted = _destinations(ranges, labels)
        first, end = ranges["train"].start, ranges["test"].stop
        tmp = staging_dir(outdir)
        try:
            _make_class_dirs(tmp)
            for frame in tqdm(range(end), desc=f"{task.name} splits from {Path(video).name}", unit="frame"):
                if frame < first:
                    ok, image = cap.grab(), None
                else:
                    ok, image = cap.read()
                if not ok:
                    raise ValueError(f"video {video} ended after {frame} frames, before the end of the "
                                     f"test split at frame {end - 1}")
                if image is not None:
                    write_png(tmp / wanted[frame], resize_frame(image))
            publish(tmp, outdir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        cap.release()
    return outdir


def summary(outdir):
    """One line per split: how many frames of each class it holds."""
    outdir = Path(outdir)
    lines = []
    for split in SPLITS:
        n0, n1 = (sum(1 for _ in (outdir / split / label).glob("*.png")) for label in ("0", "1"))
        lines.append(f"{split}: {n0 + n1} frames ({n1} positive, {n0} negative)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Label NoScope frames from NoScope's label CSV (class 1 = the task's object is in the "
                    "frame) and split them into OUTDIR/{train,val,test}/{0,1}/<frame>.png by the task's "
                    "split rules.")
    parser.add_argument("task", metavar="TASK",
                        help=f"NoScope task, optionally with a synthetic- prefix: {', '.join(task_names('noscope'))}")
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to create (e.g. data/noscope-coral-subset)")
    parser.add_argument("--infile", required=True, metavar="CSV",
                        help="NoScope's label CSV (columns include frame and object_name)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--indir", metavar="FRAMES", help="frames saved by util/noscope_video_save.py")
    source.add_argument("--video", metavar="VIDEO", help="split straight from the video instead")
    args = parser.parse_args(argv)
    try:
        if args.video:
            split_from_video(args.task, args.outdir, args.infile, args.video)
        else:
            split_from_frames(args.task, args.outdir, args.infile, args.indir)
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    print(summary(args.outdir))


if __name__ == "__main__":
    main()
