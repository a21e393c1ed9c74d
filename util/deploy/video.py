"""Classify every frame of a video, or every image of a folder, with a trained FoldedCNN, streaming: one CSV row each.

Video frames are decoded one batch at a time (never the whole video in memory) and turned into what training saw:
for a NoScope model resized to 50x50 with nearest-neighbour interpolation, RGB floats in [0, 1]; for a model of
your own (train.py --model_file) converted to its grayscale or RGB and resized (bilinear) to its H x W, as its
training images were. Images of a folder are read as training read its images. Every f consecutive images form
one folded input; when their count is not a multiple of f, the last group is padded by repeating the last image and
the padding's predictions are dropped. Labels are the class folders the model was trained on. An ONNX file written by
util/export.py (fp32 or int8) runs on the CPU with the backend its precision defaults to (util/runtime/backends.py),
its task, fold and class names read from its metadata.
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

from PIL import Image

from config.tasks import USER, get_task, task_names
from datasets.folder import is_image
from datasets.loaders import fit_image, image_reader
from datasets.noscope import frame_count, open_video, resize_frame
from models.fold import fold_input, unfold_output
from util.core.device import pick_device
from util.core.files import filesystem_failure, write_atomic
from util.runtime.backends import INT8_BACKENDS, default_backend
from util.runtime.onnx import cpu_runner
from util.train.checkpoint import checkpoint_path, load_classifier, task_of


def frame_tensor(frame, task=None):
    """A decoded BGR video frame as the model's input: 50x50 nearest-neighbour, RGB, floats in [0, 1].

    Training read the PNGs that noscope_video_save.py wrote from `resize_frame(frame)` as RGB and
    applied ToTensor; this is the same without the PNG round trip (PNG is lossless). A user's task (`task`) reads
    the frame as its own images: datasets.loaders.read_resized.
    """
    if task is not None and task.family == USER:
        return to_tensor(fit_image(Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])), task.input_shape))
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


def check_source(task, model, video):
    """A ValueError unless `task`'s model (`model` names its file) can classify video frames (NoScope or a user's own
    model), or with not `video` images of a folder (any but CIFAR's)."""
    if task.family == "cifar":
        raise ValueError(f"{model} is for {task.name}, whose CNN takes {task.input_shape[1]}x{task.input_shape[2]} "
                         "normalised images; classify_video.py takes NoScope checkpoints, your own models' and (for "
                         "folders of images) game tasks'")
    if video and task.family == "game":
        raise ValueError(f"{model} is for {task.name}, a game task: its CNN takes crops of the game's HUD, not whole "
                         "video frames; classify a folder of crops instead, or give a NoScope checkpoint "
                         f"({', '.join(task_names('noscope'))}) or your own model's")


def video_checkpoint(checkpoint, device, video=True):
    """`(classifier, task, fold, dataset)` of a checkpoint that can classify video frames or a folder's images
    (check_source)."""
    classifier, state = load_classifier(checkpoint, device)
    task = task_of(state["model_args"])
    check_source(task, f"checkpoint {checkpoint_path(checkpoint)}", video)
    return classifier, task, state["model_args"]["fold"], state.get("dataset")


def onnx_checkpoint(path, video=True):
    """`(classifier, task, fold, dataset)` of an ONNX file written by util/export.py, run on the CPU by its
    precision's default backend: the classifier takes (N, C, H, W) images, N a multiple of f, and returns (N, K)
    logits whichever input the file takes (folded inputs or plain images)."""
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception:  # not a protobuf, or not an ONNX one
        raise ValueError(f"cannot read {path} as an ONNX model: give a .onnx file written by util/export.py, or a "
                         "best.pth") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if "task" not in meta or "fold" not in meta:
        raise ValueError(f"{path} has no task and fold in its metadata: give a .onnx file written by util/export.py, "
                         "or the checkpoint it came from")
    try:
        task = get_task(meta["task"])
    except ValueError:
        raise ValueError(f"{path} is a model of {meta['task']}, your own CNN, whose images are read as its model file "
                         "says: classify with its checkpoint (the run directory's best.pth)") from None
    check_source(task, str(path), video)
    fold, folded = int(meta["fold"]), meta.get("input") != "images"
    backend = default_backend(torch.device("cpu"), meta.get("precision", "fp32"))
    run = cpu_runner(model.SerializeToString(), backend if backend in INT8_BACKENDS else "onnxruntime")

    def classify(images):
        logits = run(fold_input(images, fold) if folded else images)
        return unfold_output(logits, fold) if folded else logits
    return classify, task, fold, meta.get("dataset")


def image_files(folder):
    """(every image file under `folder` (recursively), sorted; the other files, skipped); a ValueError when there is
    no image."""
    every = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    files = [p for p in every if is_image(p)]
    if not files:
        raise ValueError(f"no images in {folder}: give a folder of .png/.jpg images or a video file")
    return files, [p.relative_to(folder).as_posix() for p in every if not is_image(p)]


def other_sizes(files, hw):
    """How many of the image `files` are not `hw` (H, W): a user's model reads them resized (bilinear), as its
    training did (datasets.folder reports the same)."""
    count = 0
    for path in files:
        with Image.open(path) as image:  # the header alone
            count += image.size != (hw[1], hw[0])
    return count


def video_frames(cap, batch_size, task):
    """(frame indices, images) batches of a video."""
    first = 0
    for frames in frame_batches(cap, batch_size):
        yield range(first, first + len(frames)), torch.stack([frame_tensor(x, task) for x in frames])
        first += len(frames)


def folder_images(folder, files, batch_size, task):
    """(paths relative to `folder`, images) batches of image files, read as training read the task's images."""
    read = image_reader(task)
    for start in range(0, len(files), batch_size):
        batch = files[start:start + batch_size]
        yield [p.relative_to(folder).as_posix() for p in batch], torch.stack([to_tensor(read(p)) for p in batch])


def classify_video(source, checkpoint, out, batch_size=1024, device=None):
    """Classify every frame of the video `source`, or every image under the folder `source`, with `checkpoint`,
    writing `frame,label,score` (a folder: `image,label,score`) rows to `out`.

    Returns a summary dict. A ValueError with one line saying why for an unusable source, checkpoint,
    batch size or output path; nothing is written then.
    """
    folder = Path(source).is_dir()
    if Path(checkpoint).suffix == ".onnx":  # ONNX Runtime or OpenVINO, on the CPU
        device = torch.device("cpu")
        classifier, task, fold, dataset = onnx_checkpoint(checkpoint, video=not folder)
    else:
        device = pick_device(device)
        classifier, task, fold, dataset = video_checkpoint(checkpoint, device, video=not folder)
    if batch_size < fold:
        raise ValueError(f"--batch_size {batch_size} is smaller than the fold {fold}: use at least {fold} images")
    batch_size -= batch_size % fold
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory; give a file name such as predictions.csv")
    names = task.label_names
    counts, seconds, skipped, resized = Counter(), [], [], 0
    if folder:
        files, skipped = image_files(source)
        resized = other_sizes(files, task.input_shape[1:]) if task.family == USER else 0
        cap, total, batches = None, len(files), folder_images(Path(source), files, batch_size, task)
    else:
        cap = open_video(source)
        total, batches = frame_count(cap) or None, video_frames(cap, batch_size, task)

    def write(f):
        f.write(b"image,label,score\n" if folder else b"frame,label,score\n")
        start = time.perf_counter()
        with tqdm(total=total, desc=f"classifying {Path(source).name}", unit="image" if folder else "frame",
                  dynamic_ncols=True) as bar:
            for keys, images in batches:
                labels, scores = predict(classifier, images, fold, device)
                text = io.StringIO()
                rows = csv.writer(text, lineterminator="\n")
                for key, label, score in zip(keys, labels, scores):
                    rows.writerow((key, names[label], f"{score:.6f}"))
                    counts[names[label]] += 1
                f.write(text.getvalue().encode())
                bar.update(len(images))
        if not counts:
            raise ValueError(f"cannot open video {source}: it has no decodable frames")
        seconds.append(time.perf_counter() - start)

    try:
        write_atomic(out, write)
    except OSError as e:
        if filesystem_failure(e):  # a full disk: the command's one line, exit 1
            raise
        raise ValueError(f"cannot write {out}: {e.strerror or e}; choose a writable --out path") from None
    finally:
        if cap is not None:
            cap.release()
    frames = counts.total()
    return {"video": str(source), "task": task.name, "dataset": dataset, "fold": fold, "frames": frames, "folder": folder,
            "frames_per_sec": frames / seconds[0] if seconds[0] else 0.0, "labels": dict(sorted(counts.items())),
            "device": str(device), "out": str(out), "skipped": skipped, "resized": resized,
            "image_size": "x".join(map(str, task.input_shape[1:])),
            "positive": task.labels["positive_object"] if task.labels else None}
