"""Synthetic stand-ins for the game-scraping and NoScope datasets.

They let training, the data pipeline and the tests run where the real data (game_data.tar,
NoScope's videos and label CSVs) is absent. They are always used under the name
`synthetic-<task>`, never in place of real data: numbers measured on them say nothing about
the paper's accuracies. Both generators are deterministic by seed.

- `make_game_dataset`: an ImageFolder tree whose classes are the task's class names rendered
  as text with TrueType fonts over textured backgrounds; class `other` is clutter.
- `make_noscope_video`: a short mp4 of a static scene that the task's positive object crosses
  now and then, plus a label CSV in NoScope's format (with a distractor object to filter out).
"""
import csv
import importlib.util
import io
import json
import os
import shutil
import string
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from config.tasks import SPLITS, Task, get_task, resolve_dataset

OTHER = "other"
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf")
SYSTEM_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MARKER = ".synthetic.json"
SUPERSAMPLE = 4  # text is drawn at 4x and box-filtered down, for smooth sub-pixel sizes and offsets
CSV_HEADER = ("frame", "object_name", "confidence", "xmin", "ymin", "xmax", "ymax")


def font_files():
    """The DejaVu TrueType fonts used for the game images: matplotlib's copies, else the system's.

    Only a fixed list of file names is used, so the images do not depend on which other fonts a
    machine happens to have.
    """
    dirs = []
    spec = importlib.util.find_spec("matplotlib")  # locate matplotlib without importing it (slow)
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    dirs.append(SYSTEM_FONT_DIR)
    for d in dirs:
        found = [d / name for name in FONT_NAMES if (d / name).is_file()]
        if found:
            return found
    raise RuntimeError(f"no TrueType fonts found: install matplotlib (it ships DejaVu fonts) or put "
                       f"{', '.join(FONT_NAMES[:2])} in {SYSTEM_FONT_DIR}")


@lru_cache(maxsize=4096)
def _font(path, size):
    return ImageFont.truetype(str(path), size)


# ---------------------------------------------------------------- game-scraping images

def _luminance(rgb):
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _colour(rng, lum_lo, lum_hi):
    """A random RGB colour whose luminance lies in [lum_lo, lum_hi]."""
    while True:
        c = rng.uniform(0, 255, 3)
        if lum_lo <= _luminance(c) <= lum_hi:
            return c


def _background(rng, h, w):
    """A dark textured background (gradient, smooth noise or stripes), float HxWx3 in [0, 255].

    Dark, like a game's HUD behind light text: a fixed contrast polarity keeps the classes
    learnable by a small CNN in a few epochs while colours, fonts and textures still vary.
    """
    base = _colour(rng, 10, 75)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # linear gradient towards a second, similar colour
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1) / 2
        other = np.clip(base + rng.uniform(-35, 35, 3), 0, 255)
        img = base + t[..., None] * (other - base)
    elif kind == 1:  # smooth noise: a coarse random grid upsampled
        coarse = rng.normal(0, 18, (rng.integers(2, 6), rng.integers(3, 9), 3)).astype(np.float32)
        img = base + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    else:  # stripes at a random angle and period
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3, 10)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + rng.uniform(0, 2 * np.pi))
        img = base + wave[..., None] * rng.uniform(6, 20)
    return img.astype(np.float32)


def _text_mask(text, font_path, h, w, rng):
    """An HxW float mask in [0, 1] of `text` filling 60-85% of the height, randomly offset."""
    s = SUPERSAMPLE
    ref = _font(font_path, 100)
    left, top, right, bottom = ref.getbbox(text)
    target_h = rng.uniform(0.7, 0.85) * h * s
    scale = target_h / max(bottom - top, 1)
    scale = min(scale, rng.uniform(0.8, 0.95) * w * s / max(right - left, 1))  # fit the width too
    font = _font(font_path, max(int(round(100 * scale)), 4))
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    slack_x, slack_y = max(w * s - tw, 0), max(h * s - th, 0)
    x = slack_x / 2 + rng.uniform(-0.15, 0.15) * slack_x
    y = slack_y / 2 + rng.uniform(-0.15, 0.15) * slack_y
    big = Image.new("L", (w * s, h * s), 0)
    ImageDraw.Draw(big).text((x - left, y - top), text, font=font, fill=255)
    return np.asarray(big.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255


def _clutter_mask(rng, h, w, class_names, fonts):
    """The mask of an `other` image: random shapes, a string that is no class name, or nothing."""
    kind = rng.integers(3)
    if kind == 0:
        s = SUPERSAMPLE
        big = Image.new("L", (w * s, h * s), 0)
        draw = ImageDraw.Draw(big)
        for _ in range(rng.integers(1, 4)):
            x0, x1 = sorted(rng.uniform(0, w * s, 2))
            y0, y1 = sorted(rng.uniform(0, h * s, 2))
            box = (x0, y0, x1 + s, y1 + s)
            shape = rng.integers(3)
            if shape == 0:
                draw.ellipse(box, fill=255)
            elif shape == 1:
                draw.rectangle(box, fill=255)
            else:
                draw.line(box, fill=255, width=int(rng.integers(s, 3 * s)))
        return np.asarray(big.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255
    if kind == 1:
        longest = max(len(c) for c in class_names if c != OTHER)
        alphabet = string.ascii_letters + string.digits
        while True:
            if rng.random() < 0.5:  # letters and digits
                text = "".join(rng.choice(list(alphabet), rng.integers(1, longest + 2)))
            else:  # a number longer than any class name
                text = "".join(rng.choice(list(string.digits), longest + 1))
            if text not in class_names:
                break
        return _text_mask(text, fonts[rng.integers(len(fonts))], h, w, rng)
    return np.zeros((h, w), np.float32)


def render_game_image(text, h, w, rng, class_names=(), fonts=None):
    """One HxW RGB uint8 image of `text` (or clutter when `text` is `other`) drawn with `rng`."""
    fonts = fonts or font_files()
    img = _background(rng, h, w)
    if text == OTHER:
        mask = _clutter_mask(rng, h, w, class_names, fonts)
    else:
        mask = _text_mask(text, fonts[rng.integers(len(fonts))], h, w, rng)
    ink = _colour(rng, 180, 255)
    img = img * (1 - mask[..., None]) + ink * mask[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    radius = rng.uniform(0, 0.6)
    if radius > 0.2:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    img = img + rng.normal(0, rng.uniform(1, 6), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _game_tree_complete(root, meta, class_names, per_class):
    marker = root / MARKER
    if not marker.is_file() or json.loads(marker.read_text()) != meta:
        return False
    return all(len(list((root / split / name).glob("*.png"))) == n
               for split, n in zip(SPLITS, per_class) for name in class_names)


def make_game_dataset(task, root, per_class=(60, 15, 15), seed=0):
    """Write `root/{train,val,test}/<class name>/<index>.png` for a game task; return `root`.

    `per_class` images per class for train, val and test, at the task's exact H x W. The tree
    is built in a temporary sibling directory and renamed to `root` at the end, so an
    interrupted run never leaves a half tree. An existing complete tree for the same task,
    counts and seed is returned as is; any other existing `root` is a ValueError.
    """
    task = get_task(task)
    if task.family != "game":
        raise ValueError(f"{task.name} is a {task.family} task; synthetic game images need a game task")
    root = Path(root)
    per_class = tuple(int(n) for n in per_class)
    if len(per_class) != 3 or min(per_class) < 1:
        raise ValueError(f"per_class must be three positive counts (train, val, test), got {per_class}")
    meta = {"task": task.name, "per_class": list(per_class), "seed": int(seed)}
    class_names = task.class_names
    if root.exists():
        if _game_tree_complete(root, meta, class_names, per_class):
            return root
        raise ValueError(f"{root} exists but is not a complete synthetic tree for {meta}; remove it or choose another root")
    _, h, w = task.input_shape
    fonts = font_files()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split_index, (split, n) in enumerate(zip(SPLITS, per_class)):
            for class_index, name in enumerate(class_names):
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for i in range(n):
                    rng = np.random.default_rng([int(seed), split_index, class_index, i])
                    img = render_game_image(name, h, w, rng, class_names, fonts)
                    Image.fromarray(img, "RGB").save(folder / f"{i}.png", format="PNG")
        (tmp / MARKER).write_text(json.dumps(meta) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the final tree should not be
        try:
            os.replace(tmp, root)
        except OSError:
            if _game_tree_complete(root, meta, class_names, per_class):  # a concurrent run finished first
                return root
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# ---------------------------------------------------------------- NoScope video

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
    tmp_csv = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    try:
        tmp_csv.write_text(buf.getvalue())
        os.replace(tmp_csv, csv_path)
    finally:
        tmp_csv.unlink(missing_ok=True)
    return video_path, csv_path
