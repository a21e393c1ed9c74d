"""Save every frame of a NoScope video as a 50x50 PNG: `OUTDIR/<frame index>.png`.

Usage: python3 util/noscope_video_save.py VIDEO OUTDIR

Frames are resized with nearest-neighbour interpolation, as the paper's noscope_video_save.py
does. The frames go to a temporary sibling directory that is renamed to OUTDIR at the end, so an
interrupted run never leaves a partial folder (whose frame count would shift the splits).
"""
import argparse

from datasets.noscope import FRAME_SIZE, save_frames
from util.core.cli import one_line_errors, run_command

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Save every frame of a NoScope video, resized to 50x50 (nearest neighbour), "
                    "as OUTDIR/<frame index>.png, for util/noscope_split.py.")
    parser.add_argument("video", metavar="VIDEO", help="the video file (e.g. coral-reef-long.mp4)")
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to create for the frames (must not hold files)")
    args = parser.parse_args(argv)
    with one_line_errors(parser, (ValueError, OSError)):
        n = save_frames(args.video, args.outdir)
    print(f"saved {n} frames of {args.video} as {FRAME_SIZE}x{FRAME_SIZE} PNGs in {args.outdir}")


if __name__ == "__main__":
    run_command(main)
