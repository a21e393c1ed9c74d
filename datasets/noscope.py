"""NoScope data: decoding a video's frames, labelling them from NoScope's CSV, splitting them.

Frames are resized to 50x50 with nearest-neighbour interpolation, as the paper's preprocessing does.
A frame is class 1 if the task's positive object (e.g. `person` for noscope-coral) has a row in
NoScope's label CSV for that frame, else class 0. The video has n_frames = the CSV's largest frame + 1
frames, as the authors count them; the frames [0, n_frames) are cut into consecutive
chunks of int(n_frames * split_fraction) frames; chunk `train_split_index` is train, the next val,
the next test (the rules in config/<task>/model_description.json). Outputs are built in a temporary
sibling folder renamed into place at the end, so an interrupted run never leaves a partial folder.
"""
import os
import re
import shutil
from pathlib import Path

# Keep FFmpeg quiet: an unreadable video gets our one-line error instead of FFmpeg's log lines.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config.tasks import SPLITS, Task, resolve_dataset, task_names  # noqa: E402
from util.core.files import publish, staging_dir, writing  # noqa: E402

FRAME_SIZE = 50


def open_video(video):
    """An opened cv2.VideoCapture for `video`; a ValueError naming the file if it cannot be read."""
    video = Path(video)
    if not video.is_file():
        raise ValueError(f"cannot open video {video}: no such file")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"cannot open video {video}: not a video OpenCV can decode")
    return cap


def frame_count(cap):
    """The frame count the container reports (may be 0 or approximate for some formats)."""
    return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)


def resize_frame(frame, size=FRAME_SIZE):
    """`frame` resized to size x size with nearest-neighbour interpolation."""
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_NEAREST)


def write_png(path, frame):
    """Write a BGR frame as PNG (the bytes cv2.imwrite writes); WriteFailed if the disk cannot take it."""
    ok, png = cv2.imencode(".png", frame)
    if not ok:
        raise ValueError(f"OpenCV cannot encode a frame as PNG for {path}")
    with writing(path):
        Path(path).write_bytes(png.tobytes())


def save_frames(video, outdir, size=FRAME_SIZE):
    """Save every frame of `video` as `outdir/<index>.png` (size x size, nearest); return the count."""
    cap = open_video(video)
    outdir = Path(outdir)
    tmp = staging_dir(outdir)
    n = 0
    try:
        with tqdm(total=frame_count(cap) or None, desc=f"frames of {Path(video).name}", unit="frame") as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                write_png(tmp / f"{n}.png", resize_frame(frame, size))
                n += 1
                bar.update()
        if n == 0:
            raise ValueError(f"cannot open video {video}: it has no decodable frames")
        publish(tmp, outdir)
    finally:
        cap.release()
        shutil.rmtree(tmp, ignore_errors=True)
    return n


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


def _label_rows(csv_path):
    """(frame indices, object names) of every row of NoScope's label CSV; a ValueError naming the problem."""
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
    if frames.empty:
        raise ValueError(f"label CSV {csv_path} has no rows: it labels no frame")
    return frames.astype(np.int64), rows["object_name"].astype(str).str.strip()


def csv_frame_count(csv_path):
    """The video's frame count as the authors take it: the label CSV's largest `frame` plus one."""
    frames, _ = _label_rows(csv_path)
    return int(frames.max()) + 1


def label_frames(csv_path, positive_object, n_frames=None):
    """Per-frame labels for frames 0..n_frames-1 (default: the CSV's frame count): 1 if `positive_object`
    has a row for the frame. Only rows whose `object_name` is `positive_object` count."""
    frames, names = _label_rows(csv_path)
    n_frames = int(frames.max()) + 1 if n_frames is None else n_frames
    hits = frames[names == positive_object].to_numpy(dtype=np.int64)
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

    n_frames is the label CSV's frame count (its largest frame + 1), as the authors count.
    """
    task, positive, fraction, index = _rules(task)
    indir, outdir = Path(indir), Path(outdir)
    if not indir.is_dir():
        raise ValueError(f"frames folder {indir} does not exist")
    saved = sum(1 for p in indir.iterdir() if FRAME_NAME.match(p.name))
    if saved == 0:
        raise ValueError(f"frames folder {indir} holds no <frame index>.png files")
    n_frames = csv_frame_count(infile)
    if n_frames > saved:
        raise ValueError(f"label CSV {infile} labels {n_frames} frames (0-{n_frames - 1}), but {indir} holds "
                         f"{saved}: pass the frames of the video that the CSV labels")
    ranges = split_ranges(n_frames, fraction, index)
    labels = label_frames(infile, positive, n_frames)
    wanted = _destinations(ranges, labels)
    missing = next((f for f in wanted if not (indir / f"{f}.png").is_file()), None)
    if missing is not None:
        raise ValueError(f"frames folder {indir} has {n_frames} frames but no {missing}.png: "
                         f"frames must be numbered 0..{n_frames - 1}")
    tmp = staging_dir(outdir)
    try:
        with writing(outdir):
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
    after the test chunk. n_frames is the label CSV's frame count (its largest frame + 1), as the authors count.
    """
    task, positive, fraction, index = _rules(task)
    outdir = Path(outdir)
    n_frames = csv_frame_count(infile)
    cap = open_video(video)
    try:
        in_video = frame_count(cap)  # 0 when the container does not say: decoding then finds a short video
        if in_video and n_frames > in_video:
            raise ValueError(f"label CSV {infile} labels {n_frames} frames (0-{n_frames - 1}), but video {video} "
                             f"has {in_video}: pass the video that the CSV labels")
        ranges = split_ranges(n_frames, fraction, index)
        labels = label_frames(infile, positive, n_frames)
        wanted = _destinations(ranges, labels)
        first, end = ranges["train"].start, ranges["test"].stop
        tmp = staging_dir(outdir)
        try:
            with writing(outdir):
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
