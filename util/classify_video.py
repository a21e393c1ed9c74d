"""Classify every frame of a video with a trained NoScope FoldedCNN: one CSV row per frame.

Usage: python3 util/classify_video.py VIDEO CHECKPOINT --out predictions.csv

The NoScope use case: a specialized CNN answers "is the task's object in this frame" for every
frame of a long video. Frames are decoded one batch at a time (never the whole video in memory),
resized to 50x50 with nearest-neighbour interpolation and turned into RGB floats in [0, 1], exactly
as training saw them (util/noscope_video_save.py's resize, then the loaders' ToTensor). The task,
fold f and multiplier come from the checkpoint. Every f consecutive frames form one folded input;
when the frame count is not a multiple of f, the last group is padded by repeating the last frame
(a real frame, so the group looks like the groups the model was trained on) and the padding's
predictions are dropped.

The output CSV has the header `frame,label,score`: frame is the 0-based frame index, label the
class the model picks (NoScope tasks: 1 = the task's object, e.g. `person` for noscope-coral, is in
the frame; 0 = it is not: the class folders the model was trained on), score the softmax
probability of that label. It is written to a temporary file renamed at the end, so an
interrupted run leaves no partial CSV.

Only NoScope checkpoints are accepted: game-task CNNs take crops of a game's HUD (e.g. 22x52
pixels of the gold counter), not whole video frames, and CIFAR CNNs take 32x32 normalised images.
"""
import argparse
import csv
import io
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from torchvision.transforms.functional import to_tensor
from tqdm import tqdm

from config.tasks import get_task, task_names
from util.common import write_atomic, pick_device, positive_int
from util.export import checkpoint_path, load_checkpoint
from util.noscope_video_save import frame_count, open_video, resize_frame


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
    classifier, state = load_checkpoint(checkpoint, device)
    task = get_task(state["task"])
    if task.family != "noscope":
        what = ("a game task: its CNN takes crops of the game's HUD, not whole video frames" if task.family == "game"
                else f"a {task.family} task: its CNN takes {task.input_shape[1]}x{task.input_shape[2]} normalised images")
        raise ValueError(f"checkpoint {checkpoint_path(checkpoint)} is for {task.name}, {what}; classify_video.py "
                         f"needs a NoScope checkpoint ({', '.join(task_names('noscope'))})")
    return classifier, task, state["fold"]


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
            "device": str(device), "out": str(out)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", metavar="VIDEO", help="the video file (anything OpenCV decodes, e.g. an mp4)")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="best.pth or current.pth written by fold_trainer.py for a NoScope task, or its run "
                             "directory (best.pth)")
    parser.add_argument("--out", required=True, metavar="CSV", help="the predictions CSV to write")
    parser.add_argument("--batch_size", type=positive_int, default=1024,
                        help="images per batch, rounded down to a multiple of f (default 1024)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: CUDA when available)")
    args = parser.parse_args(argv)
    try:
        summary = classify_video(args.video, args.checkpoint, args.out, args.batch_size, args.device)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    labels = ", ".join(f"{n} x {label}" for label, n in summary["labels"].items())
    print(f"classified {summary['frames']} frames of {summary['video']} with {summary['task']} fold {summary['fold']} "
          f"on {summary['device']} ({summary['frames_per_sec']:.0f} frames/s): {labels}; wrote {summary['out']}")


if __name__ == "__main__":
    main()
