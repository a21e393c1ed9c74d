"""Save every frame of a NoScope video as a 50x50 PNG: `OUTDIR/<frame index>.png`.

Usage: python3 util/noscope_video_save.py VIDEO OUTDIR

Frames are resized with nearest-neighbour interpolation, as the paper's noscope_video_save.py
does. The frames go to a temporary sibling directory that is renamed to OUTDIR at the end, so an
interrupted run never leaves a partial folder (whose frame count would shift the splits).
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Keep FFmpeg quiet: an unreadable video gets our one-line error instead of FFmpeg's log lines.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2
from tqdm import tqdm

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
    """Write a BGR frame as PNG; an OSError if OpenCV cannot."""
    if not cv2.imwrite(str(path), frame):
        raise OSError(f"cannot write {path}")


def staging_dir(outdir):
    """A fresh temporary sibling of `outdir` to build it in; a ValueError if `outdir` has files or cannot be made.

    An existing empty `outdir` is fine: renaming a directory onto an empty one replaces it.
    """
    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ValueError(f"{outdir} already exists and is not empty; remove it or choose another output folder")
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    except OSError as e:
        raise ValueError(f"cannot write to {outdir} ({e.filename}: {e.strerror}); "
                         "choose a writable output folder") from None


def publish(tmp, outdir):
    """Rename the finished temporary directory `tmp` to `outdir`."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result should not be
    os.replace(tmp, outdir)


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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Save every frame of a NoScope video, resized to 50x50 (nearest neighbour), "
                    "as OUTDIR/<frame index>.png, for util/noscope_split.py.")
    parser.add_argument("video", metavar="VIDEO", help="the video file (e.g. coral-reef-long.mp4)")
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to create for the frames (must not hold files)")
    args = parser.parse_args(argv)
    try:
        n = save_frames(args.video, args.outdir)
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"saved {n} frames to {args.outdir}")


if __name__ == "__main__":
    main()
