"""Classify every frame of a video (or every image of a folder) with a trained FoldedCNN: one CSV row each.

Usage: python3 util/classify_video.py VIDEO CHECKPOINT --out predictions.csv
       python3 util/classify_video.py FOLDER CHECKPOINT --out predictions.csv

CHECKPOINT: a run's best.pth (or its run directory), or the .onnx file util/export.py wrote from it (fp32 or
--int8; run on the CPU by ONNX Runtime, or OpenVINO for int8 where the CPU has VNNI). A .onnx of your own CNN is
refused: its checkpoint knows how its images are read.

A checkpoint of your own CNN (train.py --model_file) reads frames as its training images were read (its grayscale
or RGB, resized bilinearly to its H x W), and labels are its class folders. A FOLDER's images (any depth, sorted)
are read as training read the task's images; its CSV has the header `image,label,score` (the path under FOLDER).
Files without an image extension are skipped and images of another size resized, as training does, and both are
counted in the closing line.

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

Videos take NoScope checkpoints and your own models': game-task CNNs take crops of a game's HUD (e.g. 22x52
pixels of the gold counter), not whole video frames (a folder of such crops works), and CIFAR CNNs take 32x32
normalised images.
"""
import argparse

from config.tasks import stand_in_note, trained_on
from util.core.cli import add_device_arg, one_line_errors, positive_int, run_command
from util.deploy.video import classify_video


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", metavar="VIDEO",
                        help="the video file (anything OpenCV decodes, e.g. an mp4), or a folder of images")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="best.pth or current.pth written by fold_trainer.py (a NoScope task's or your own "
                             "model's), its run directory (best.pth), or the .onnx util/export.py wrote from it")
    parser.add_argument("--out", required=True, metavar="CSV", help="the predictions CSV to write")
    parser.add_argument("--batch_size", type=positive_int, default=1024,
                        help="images per batch, rounded down to a multiple of f (default 1024)")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    with one_line_errors(parser):
        summary = classify_video(args.video, args.checkpoint, args.out, args.batch_size, args.device)
    labels = ", ".join(f"{n} x {label}" for label, n in summary["labels"].items())
    what = "images" if summary["folder"] else "frames"
    meaning = f" (label 1: {summary['positive']} in the frame, 0: not)" if summary["positive"] else ""
    print(f"classified {summary['frames']} {what} of {summary['video']} with {summary['task']} fold {summary['fold']} "
          f"{trained_on(summary['dataset'])} on {summary['device']} ({summary['frames_per_sec']:.0f} {what}/s): {labels}{meaning}; "
          f"wrote {summary['out']}")
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} files that are not images skipped (first: {summary['skipped'][0]})")
    if summary["resized"]:
        print(f"{summary['resized']} images of another size than {summary['image_size']} resized (bilinear) when read, "
              "as training resized them")
    note = stand_in_note(summary["dataset"], summary["task"])
    if note:
        print(note)


if __name__ == "__main__":
    run_command(main)
