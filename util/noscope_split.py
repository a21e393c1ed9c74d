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

from config.tasks import task_names
from datasets.noscope import split_from_frames, split_from_video, summary
from util.core.cli import one_line_errors, run_command


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
    with one_line_errors(parser, (ValueError, OSError)):
        if args.video:
            split_from_video(args.task, args.outdir, args.infile, args.video)
        else:
            split_from_frames(args.task, args.outdir, args.infile, args.indir)
    print(summary(args.outdir))


if __name__ == "__main__":
    run_command(main)
