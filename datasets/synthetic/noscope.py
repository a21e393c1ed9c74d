"""Synthetic stand-ins for NoScope: a short mp4 of a static scene that the task's positive object crosses now and
then, plus a label CSV in NoScope's format, with a distractor object to filter out (datasets/synthetic/)."""
import csv
import errno
import io
import os
from pathlib import Path

import cv2
import numpy as np

from config.tasks import Task, get_task, resolve_dataset
from util.core.files import WriteFailed, write_text_atomic, writing

CSV_HEADER = ("frame", "object_name", "confidence", "xmin", "ymin", "xmax", "ymax")


def _scene(rng, w, h):
    """A static, muted, textured street-like background (BGR float)."""
    horizon = int(h * rng.uniform(0.35, 0.5))
    img = np.empty((h, w, 3), np.float32)
    sky_top, sky_bottom = rng.uniform(120, 200, 3), rng.uniform(150, 220, 3)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = sky_top + t * (sky_bottom - sky_top)
    img[horizon:] = rng.uniform(70, 120) + rng.uniform(-10, 10, 3)
    for _ in range(rng.integers(4, 9)):  # buildings and trees on the horizon
        bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.15, 0.4) * h)
        x = int(rng.uniform(-0.05, 0.95) * w)
        grey = rng.uniform(60, 150)
        colour = np.clip(grey + rng.uniform(-15, 15, 3), 0, 255)
        cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), colour.tolist(), -1)
    coarse = rng.normal(0, 10, (h // 8, w // 8, 3)).astype(np.float32)
    img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return img, horizon


def _object_size(name, w, h):
    """(width, height) in pixels of the drawn object: big enough to survive a 50x50 resize."""
    sizes = {"person": (0.12, 0.42), "car": (0.3, 0.2), "bus": (0.45, 0.32), "bicycle": (0.2, 0.22)}
    fw, fh = sizes.get(name, (0.2, 0.25))
    return int(fw * w), int(fh * h)


def _draw_object(img, name, x, y, ow, oh):
    """Draw object `name` with its top-left corner at (x, y) and size (ow, oh) on BGR `img`."""
    x, y = int(x), int(y)
    if name == "person":  # red shirt, skin-coloured head, dark blue trousers
        head = max(ow // 2, 2)
        cv2.circle(img, (x + ow // 2, y + head), head, (150, 190, 240), -1)
        cv2.rectangle(img, (x, y + 2 * head), (x + ow, y + int(0.6 * oh)), (30, 30, 235), -1)
        cv2.rectangle(img, (x + 1, y + int(0.6 * oh)), (x + ow - 1, y + oh), (110, 40, 20), -1)
    elif name == "car":  # bright blue body and cabin, black wheels
        body_top = y + int(0.4 * oh)
        cv2.rectangle(img, (x + ow // 4, y), (x + 3 * ow // 4, body_top), (235, 120, 20), -1)
        cv2.rectangle(img, (x, body_top), (x + ow, y + int(0.8 * oh)), (235, 120, 20), -1)
        r = max(oh // 5, 2)
        for cx in (x + ow // 5, x + 4 * ow // 5):
            cv2.circle(img, (cx, y + oh - r), r, (15, 15, 15), -1)
    elif name == "bus":  # yellow box with a row of dark windows
        cv2.rectangle(img, (x, y), (x + ow, y + oh), (20, 210, 245), -1)
        slot = ow / 5
        for k in range(5):
            wx = int(x + (k + 0.2) * slot)
            cv2.rectangle(img, (wx, y + oh // 6), (wx + max(int(0.6 * slot), 2), y + oh // 2), (60, 40, 30), -1)
    elif name == "bicycle":  # two grey wheel outlines and a thin frame: deliberately dull
        r = max(min(ow // 4, oh // 2), 3)
        c1, c2 = (x + r, y + oh - r), (x + ow - r, y + oh - r)
        for c in (c1, c2):
            cv2.circle(img, c, r, (95, 95, 95), 2)
        cv2.line(img, c1, (x + ow // 2, y + oh // 3), (80, 80, 80), 2)
        cv2.line(img, (x + ow // 2, y + oh // 3), c2, (80, 80, 80), 2)
    else:  # any other positive object: a magenta diamond with a white core
        cx, cy = x + ow // 2, y + oh // 2
        pts = np.array([(cx, y), (x + ow, cy), (cx, y + oh), (x, cy)], np.int32)
        cv2.fillPoly(img, [pts], (220, 30, 220))
        cv2.circle(img, (cx, cy), max(min(ow, oh) // 6, 1), (255, 255, 255), -1)


def _appearances(rng, n_frames):
    """Alternating gaps and appearances covering [0, n_frames): lists of (start, stop) pairs.

    Appearance and gap lengths scale with the video, so about 40% of the frames are positive in
    a dozen or more separate appearances spread over the whole video.
    """
    a_lo = max(2, n_frames // 60)
    a_hi = max(a_lo + 1, n_frames // 25)
    g_lo = max(2, n_frames // 45)
    g_hi = max(g_lo + 1, n_frames // 18)
    shows, gaps = [], []
    pos = 0
    while pos < n_frames:
        gap = int(rng.integers(g_lo, g_hi + 1))
        gaps.append((pos, min(pos + gap, n_frames)))
        pos += gap
        if pos >= n_frames:
            break
        length = int(rng.integers(a_lo, a_hi + 1))
        shows.append((pos, min(pos + length, n_frames)))
        pos += length
    return shows, gaps


def _track(rng, start, stop, ow, oh, w, h, horizon):
    """Per-frame boxes (x, y, x + ow, y + oh) of an object crossing the scene over [start, stop)."""
    y = rng.uniform(max(horizon - oh // 2, 0), h - oh - 1)
    x0, x1 = rng.uniform(0, 0.3 * (w - ow)), rng.uniform(0.7 * (w - ow), w - ow - 1)
    if rng.random() < 0.5:
        x0, x1 = x1, x0
    n = stop - start
    boxes = {}
    for k, frame in enumerate(range(start, stop)):
        x = x0 + (x1 - x0) * k / max(n - 1, 1)
        yk = min(max(y + 1.5 * np.sin(k / 2), 0), h - oh - 1)  # a slight bob
        boxes[frame] = (int(x), int(yk), int(x) + ow, int(yk) + oh)
    return boxes


def distractor_for(positive_object):
    """The distractor object drawn next to `positive_object`: one that is never the positive."""
    return "bicycle" if positive_object != "bicycle" else "dog"


def make_noscope_video(task, video_path, csv_path, n_frames=2000, size=(160, 120), fps=30, seed=0):
    """Write a synthetic NoScope video (mp4v) and its label CSV; return (video_path, csv_path).

    The task's positive object crosses a static scene (mild noise and lighting drift) in
    several appearances covering about 40% of the frames; a dull distractor object (`bicycle`)
    crosses in some of the other frames. The CSV has NoScope's columns
    `frame,object_name,confidence,xmin,ymin,xmax,ymax`, one row per object per frame, and the last frame
    always holds an object, so the CSV's frame count (largest frame + 1) is the video's. `task`
    may carry a `synthetic-` prefix. Both files are written to temporary names and renamed.
    """
    task = get_task(task) if isinstance(task, Task) else resolve_dataset(task)[0]
    if task.family != "noscope":
        raise ValueError(f"{task.name} is a {task.family} task; a synthetic NoScope video needs a NoScope task")
    if n_frames < 1:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    positive = task.labels["positive_object"]
    distractor = distractor_for(positive)
    w, h = size
    rng = np.random.default_rng(seed)
    background, horizon = _scene(rng, w, h)
    shows, gaps = _appearances(rng, n_frames)
    pw, ph = _object_size(positive, w, h)
    dw, dh = _object_size(distractor, w, h)
    objects = {}  # frame -> [(name, box)]
    for start, stop in shows:
        for frame, box in _track(rng, start, stop, pw, ph, w, h, horizon).items():
            objects.setdefault(frame, []).append((positive, box))
    for start, stop in gaps:
        if stop - start >= 2 and rng.random() < 0.6:
            length = max(int((stop - start) * rng.uniform(0.3, 0.8)), 1)
            s = start + int(rng.integers(0, stop - start - length + 1))
            for frame, box in _track(rng, s, s + length, dw, dh, w, h, horizon).items():
                objects.setdefault(frame, []).append((distractor, box))
    if n_frames - 1 not in objects:  # the CSV's last row is the video's last frame: both count the same frames
        start = max(n_frames - 3, 0)
        for frame, box in _track(rng, start, n_frames, dw, dh, w, h, horizon).items():
            objects.setdefault(frame, []).append((distractor, box))

    video_path, csv_path = Path(video_path), Path(csv_path)
    for p in (video_path, csv_path):
        with writing(p):
            p.parent.mkdir(parents=True, exist_ok=True)
    tmp_video = video_path.with_name(f".{video_path.stem}.{os.getpid()}.tmp{video_path.suffix or '.mp4'}")
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write an mp4v video to {tmp_video}")
        drift_period, drift_phase = rng.uniform(200, 600), rng.uniform(0, 2 * np.pi)
        for frame in range(n_frames):
            img = background.copy()
            for obj, (x0, y0, x1, y1) in objects.get(frame, []):
                _draw_object(img, obj, x0, y0, x1 - x0, y1 - y0)
            light = 1 + 0.08 * np.sin(2 * np.pi * frame / drift_period + drift_phase)
            img = img * light + rng.normal(0, 3, img.shape).astype(np.float32)
            writer.write(np.clip(img, 0, 255).astype(np.uint8))
        writer.release()
        if os.statvfs(tmp_video.parent).f_bavail == 0:  # OpenCV drops the frames of a full disk without a word
            raise WriteFailed(errno.ENOSPC, os.strerror(errno.ENOSPC), str(video_path))
        os.replace(tmp_video, video_path)
    finally:
        writer.release()
        tmp_video.unlink(missing_ok=True)

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_HEADER)
    for frame in sorted(objects):
        for obj, box in objects[frame]:
            out.writerow((frame, obj, f"{rng.uniform(0.5, 0.99):.3f}", *box))
    write_text_atomic(csv_path, buf.getvalue())
    return video_path, csv_path
