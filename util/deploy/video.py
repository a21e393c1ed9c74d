"""Classify every frame of a video with a trained NoScope FoldedCNN, streaming: one CSV row per frame.

Frames are decoded one batch at a time (never the whole video in memory), resized to 50x50 with
nearest-neighbour interpolation and turned into RGB floats in [0, 1], exactly as training saw them.
Every f consecutive frames form one folded input; when the frame count is not a multiple of f, the
last group is padded by repeating the last frame and the padding's predictions are dropped.
"""
import csv
import io
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import to_tensor
from tqdm import tqdm

from config.tasks import get_task, task_names
from datasets.noscope import frame_count, open_video, resize_frame
from util.train.checkpoint import checkpoint_path, load_classifier
from util.core.device import pick_device
from util.core.files import write_atomic


def class_names(task):
    """Class index -> name in training's order: ImageFolder's sorted class folders (NoScope: 0, 1)."""
    return sorted(task.class_names or [str(k) for k in range(task.num_classes)])


def frame_tensor(frame):
    """A decoded BGR video frame as the model's input: 50x50 nearest-neighbour, RGB, floats in [0, 1].

    Training read the PNGs that noscope_video_save.py wrote from `resize_frame(frame)` as RGB and
    applied ToTensor; this is the same without the PNG round trip (PNG is lossless).
    """
    return to_tensor(np.ascontiguousarray(resize_frame(frame)[:, :, ::-1]))


def frame_batches(cap, size):
    """Lists of up to `size` decoded frames, in order, until the video ends: one batch in memory at a time."""
    batch = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def predict(classifier, images, fold, device):
    """(labels, scores) of the images (N, C, H, W): the last group padded with the last image, padding dropped."""
    n = images.shape[0]
    pad = -n % fold
    if pad:
        images = torch.cat([images, images[-1:].expand(pad, -1, -1, -1)])
    probabilities = torch.softmax(classifier(images.to(device)).float(), dim=1)[:n]
    scores, labels = probabilities.max(dim=1)
    return labels.cpu().tolist(), scores.cpu().tolist()


def noscope_checkpoint(checkpoint, device):
    """`(classifier, task, fold)` of a NoScope FoldedCNN checkpoint; a ValueError for any other task."""
    classifier, state = load_classifier(checkpoint, device)
    task = get_task(state["model_args"]["task"])
    if task.family != "noscope":
        what = ("a game task: its CNN takes crops of the game's HUD, not whole video frames" if task.family == "game"
                else f"a {task.family} task: its CNN takes {task.input_shape[1]}x{task.input_shape[2]} normalised images")
        raise ValueError(f"checkpoint {checkpoint_path(checkpoint)} is for {task.name}, {what}; classify_video.py "
                         f"needs a NoScope checkpoint ({', '.join(task_names('noscope'))})")
    return classifier, task, state["model_args"]["fold"]


def classify_video(video, checkpoint, out, batch_size=1024, device=None):
    """Classify every frame of `video` with `checkpoint`, writing `frame,label,score` rows to `out`.

    Returns a summary dict. A ValueError with one line saying why for an unusable video, checkpoint,
    batch size or output path; nothing is written then.
    """
    device = pick_device(device)
    classifier, task, fold = noscope_checkpoint(checkpoint, device)
    if batch_size < fold:
        raise ValueError(f"--batch_size {batch_size} is smaller than the fold {fold}: use at least {fold} images")
    batch_size -= batch_size % fold
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory; give a file name such as predictions.csv")
    names = class_names(task)
    counts, seconds = Counter(), []
    cap = open_video(video)

    def write(f):
        f.write(b"frame,label,score\n")
        start, frame = time.perf_counter(), 0
        with tqdm(total=frame_count(cap) or None, desc=f"classifying {Path(video).name}", unit="frame",
                  dynamic_ncols=True) as bar:
            for frames in frame_batches(cap, batch_size):
                labels, scores = predict(classifier, torch.stack([frame_tensor(x) for x in frames]), fold, device)
                text = io.StringIO()
                rows = csv.writer(text, lineterminator="\n")
                for label, score in zip(labels, scores):
                    rows.writerow((frame, names[label], f"{score:.6f}"))
                    counts[names[label]] += 1
                    frame += 1
                f.write(text.getvalue().encode())
                bar.update(len(frames))
        if frame == 0:
            raise ValueError(f"cannot open video {video}: it has no decodable frames")
        seconds.append(time.perf_counter() - start)

    try:
        write_atomic(out, write)
    except OSError as e:
        raise ValueError(f"cannot write {out}: {e.strerror or e}; choose a writable --out path") from None
    finally:
        cap.release()
    frames = counts.total()
    return {"video": str(video), "task": task.name, "fold": fold, "frames": frames,
            "frames_per_sec": frames / seconds[0] if seconds[0] else 0.0, "labels": dict(sorted(counts.items())),
            "device": str(device), "out": str(out),
            "positive": task.labels["positive_object"] if task.labels else "the positive class"}
