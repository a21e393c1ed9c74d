"""Bad input to the command-line tools (issue 5): one test per bad input, each tried on every tool it reaches.

Each case runs in its own copy of a world that holds work already done: tiny NoScope data, a
finished train.py run (stats, current.pth, best.pth, result.json, summary.csv), and a NoScope video
with its label CSV, saved frames and splits. The case snapshots every file and folder of its world,
runs the bad command (its main(argv), in a worker process that keeps Python and PyTorch loaded between
commands: helpers.CommandWorkers), and checks: exit code 2, one `error:` line (argparse's usage
may come before it) naming the problem and the fix, no traceback, and a world that is byte for byte
what it was: no file changed, added or removed, no folder created. The cases of a test run at once,
one per core, each in its own world.
"""
import dataclasses
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from datasets.synthetic import make_noscope_video
from helpers import CommandWorkers, write_image_folder
from datasets.noscope import split_from_frames
from datasets.noscope import save_frames

DATASET = "noscope-coral"
FRESH = "{w}/fresh-run"  # a savedir that does not exist yet: it must not be created either
RESUME = ["--continue_from_file", "{run}/current.pth", "--epochs", "3"]  # one more epoch of the finished run

pytestmark = pytest.mark.slow  # every test here runs commands end to end


@dataclasses.dataclass
class Finished:
    """The world every case copies, and the worker processes that run the cases' commands."""

    root: object
    workers: CommandWorkers


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Built once: data/, sweep/ (a finished 2-epoch run at f=1) and noscope/ (video, CSV, frames, splits)."""
    root, workers = tmp_path_factory.mktemp("finished"), CommandWorkers()
    write_image_folder(root / "data" / f"{DATASET}-subset", ["0", "1"], (50, 50), per_split=(8, 4, 4))
    done = workers.run("train.py", root / "sweep", "--datasets", DATASET, "--folds", "1", "--epochs", "2",
                       "--data_dir", root / "data", "--device", "cpu", "--workers", "0")
    assert done.returncode == 0, done.stderr
    ns = root / "noscope"
    video, labels = make_noscope_video(DATASET, ns / "coral.mp4", ns / "coral.csv", n_frames=16)
    save_frames(video, ns / "frames")
    split_from_frames(DATASET, ns / "subset", labels, ns / "frames")
    yield Finished(root, workers)
    workers.close()


def places(world):
    """What the placeholders of a case's argv and messages stand for in `world`."""
    return {"w": world, "data": world / "data", "subset": world / "data" / f"{DATASET}-subset",
            "sweep": world / "sweep", "run": world / "sweep" / DATASET / "fold1" / "multiplier1" / "none",
            "ns": world / "noscope"}


@dataclasses.dataclass
class Bad:
    """One bad command: `argv` (the script first) run after `prepare(world)`, refused with every piece of `expect`."""

    name: str
    argv: list
    expect: list
    prepare: object = None
    stdout: tuple = ()  # pieces that stdout must hold


def snapshot(root):
    """{relative path: bytes} of every file under `root`, and {relative path/: None} of every folder."""
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""): None if p.is_dir() else p.read_bytes()
            for p in root.rglob("*")}


def refused(workers, world, case):
    """Run `case` in `world` and check the refusal (placeholders such as {run} filled in from places())."""
    fill = places(world)
    argv = [str(a).format(**fill) for a in case.argv]
    if case.prepare:
        case.prepare(world)
    before = snapshot(world)
    done = workers.run(argv[0], *argv[1:], cwd=world)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and re.match(r"([\w.]+: )?error: ", lines[-1]), done.stderr
    assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), done.stderr  # argparse's usage first
    for piece in case.expect:
        assert piece.format(**fill) in lines[-1], lines[-1]
    for piece in case.stdout:
        assert piece.format(**fill) in done.stdout, done.stdout
    after = snapshot(world)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "absent") != after.get(k, "absent"))
    assert changed == [], f"changed, added or removed: {changed}"


def check(finished, tmp_path, *cases):
    """Check every case in its own copy of the finished world, as many at once as there are cores."""
    def one(case):
        world = tmp_path / case.name
        shutil.copytree(finished.root, world)
        try:
            refused(finished.workers, world, case)
        except AssertionError as e:
            return f"[{case.name}] {e}"
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        failures = [failure for failure in pool.map(one, cases) if failure]
    assert not failures, "\n\n".join(failures)


UNKNOWN_DATASET = ["unknown dataset 'nope'", "choose a task (", DATASET, "synthetic-<task>"]


def test_unknown_task_or_mode(finished, tmp_path):
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", "nope", "--savedir", FRESH, "--data_dir", "{data}"],
              UNKNOWN_DATASET),
          Bad("train", ["train.py", "{sweep}", "--datasets", "nope", "--data_dir", "{data}"], UNKNOWN_DATASET),
          Bad("infer", ["infer.py", "nope"], ["argument TASK: invalid choice: 'nope' (choose from", DATASET]),
          Bad("infer-mode", ["infer.py", DATASET, "--mode", "bogus"],
              ["argument --mode: invalid choice: 'bogus' (choose from 'original', 'folded', 'efficientnet')"]))


def test_fold_that_is_not_a_positive_integer(finished, tmp_path):
    check(finished, tmp_path,
          Bad("fold_trainer-0", ["fold_trainer.py", "--dataset", DATASET, "--fold", "0", "--savedir", FRESH],
              ["argument --fold: must be a positive integer, got '0'"]),
          Bad("fold_trainer-1.5", ["fold_trainer.py", "--dataset", DATASET, "--fold", "1.5", "--savedir", FRESH],
              ["argument --fold: must be a positive integer, got '1.5'"]),
          Bad("train-0", ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "1", "0", "--data_dir", "{data}"],
              ["argument --folds: must be a positive integer, got '0'"]),
          Bad("train-1.5", ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "1.5", "--data_dir", "{data}"],
              ["argument --folds: must be a positive integer, got '1.5'"]))


def test_batch_size_smaller_than_the_fold(finished, tmp_path):
    expect = ["--batch_size 2 is smaller than the fold 4", "use at least 4"]
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--fold", "4", "--batch_size", "2",
                               "--savedir", FRESH, "--data_dir", "{data}"], expect),
          # f=1 comes first: it would resume the finished run for a third epoch before f=4 fails
          Bad("train", ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "1", "4", "--batch_size", "2",
                        "--epochs", "3", "--data_dir", "{data}", "--workers", "0"], expect))


def test_checkpoint_of_another_run(finished, tmp_path):
    def weights_only(world):  # a plain state dict, like model_files/<task>/original/model.pth
        torch.save(torch.load(places(world)["run"] / "best.pth", weights_only=True)["model"], world / "model.pth")

    not_this_run = ["checkpoint {run}/current.pth is for dataset noscope-coral, fold 1, multiplier 1.0",
                    "pass that run's checkpoint"]
    check(finished, tmp_path,
          # noscope-night has no data here: the checkpoint must be refused before the data is looked at
          Bad("other-task", ["fold_trainer.py", "--dataset", "noscope-night", "--savedir", "{run}", *RESUME,
                             "--data_dir", "{data}"], not_this_run + ["not noscope-night, fold 1, multiplier 1.0"]),
          Bad("other-fold", ["fold_trainer.py", "--dataset", DATASET, "--fold", "2", "--savedir", "{run}", *RESUME,
                             "--data_dir", "{data}"], not_this_run + ["not noscope-coral, fold 2, multiplier 1.414"]),
          Bad("other-multiplier", ["fold_trainer.py", "--dataset", DATASET, "--multiplier", "2", "--savedir", "{run}",
                                   *RESUME, "--data_dir", "{data}"],
              not_this_run + ["not noscope-coral, fold 1, multiplier 2.0"]),
          # train.py must not create the fold-2 run directory for a checkpoint it refuses
          Bad("train-other-fold", ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "2", *RESUME,
                                   "--data_dir", "{data}"], not_this_run + ["not noscope-coral, fold 2"]),
          Bad("not-a-checkpoint", ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", "--continue_from_file",
                                   "{run}/stats/train_loss.txt", "--epochs", "3", "--data_dir", "{data}"],
              ["cannot read checkpoint {run}/stats/train_loss.txt: not a checkpoint (",
               "pass a current.pth or best.pth written by fold_trainer.py"]),
          Bad("model-weights", ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", "--continue_from_file",
                                "{w}/model.pth", "--epochs", "3", "--data_dir", "{data}"],
              ["{w}/model.pth is not a training checkpoint; pass a current.pth or best.pth written by fold_trainer.py"],
              weights_only))


def test_missing_or_empty_split_directory(finished, tmp_path):
    def remove_val(world):
        shutil.rmtree(places(world)["subset"] / "val")

    def empty_val(world):
        remove_val(world)
        (places(world)["subset"] / "val").mkdir()

    resume = ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", *RESUME, "--data_dir", "{data}"]
    sweep = ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "1", "--epochs", "3", "--data_dir", "{data}"]
    expect = ["missing or empty split directory {subset}/val", "util/noscope_split.py"]
    # train.py skips a task without data, saying why on stdout, and fails when no task is left
    no_task = ["no data for any selected task (see the lines above)"]
    check(finished, tmp_path,
          Bad("fold_trainer-missing", resume, expect, remove_val),
          Bad("fold_trainer-empty", resume, expect, empty_val),
          Bad("train-missing", sweep, no_task, remove_val, stdout=[f"skipping {DATASET}: " + expect[0]]),
          Bad("train-empty", sweep, no_task, empty_val, stdout=[f"skipping {DATASET}: " + expect[0]]))


def test_class_folders_that_differ_between_splits(finished, tmp_path):
    def rename_class(world):
        (places(world)["subset"] / "test" / "1").rename(places(world)["subset"] / "test" / "2")

    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", *RESUME,
                               "--data_dir", "{data}"],
              ["class folders of {subset}/test (0, 2) differ from those of {subset}/train (0, 1)",
               "every split needs the same classes"], rename_class))


def test_unreadable_or_corrupt_image(finished, tmp_path):
    def garbage(split):
        return lambda world: (places(world)["subset"] / split / "1" / "2.png").write_bytes(b"not a png")

    def truncated(world):
        path = places(world)["subset"] / "test" / "1" / "2.png"
        path.write_bytes(path.read_bytes()[:60])

    def wrong_size(world):
        Image.new("RGB", (40, 50)).save(places(world)["subset"] / "train" / "1" / "2.png")

    resume = ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", *RESUME, "--data_dir", "{data}"]
    streamed = resume + ["--stream_images", "--workers", "1"]  # read during the epoch, in a data-loader worker
    check(finished, tmp_path,
          Bad("garbage", resume, ["cannot read image {subset}/val/1/2.png (", "replace or delete the file"],
              garbage("val")),
          Bad("truncated", resume, ["cannot read image {subset}/test/1/2.png (", "replace or delete the file"],
              truncated),
          Bad("garbage-streamed", streamed, ["cannot read image {subset}/train/1/2.png (", "replace or delete"],
              garbage("train")),
          Bad("wrong-size-streamed", streamed,
              ["image {subset}/train/1/2.png is 50x40, but the task takes 50x50 images", "resize the data"],
              wrong_size))


def test_video_that_cannot_be_opened(finished, tmp_path):
    def broken_video(world):
        (places(world)["ns"] / "broken.mp4").write_bytes((places(world)["ns"] / "coral.mp4").read_bytes()[:2000])

    split = ["util/noscope_split.py", DATASET, "{ns}/subset2", "--infile", "{ns}/coral.csv", "--video"]
    check(finished, tmp_path,
          Bad("save-broken", ["util/noscope_video_save.py", "{ns}/broken.mp4", "{ns}/frames2"],
              ["cannot open video {ns}/broken.mp4: not a video OpenCV can decode"], broken_video),
          Bad("save-absent", ["util/noscope_video_save.py", "{ns}/absent.mp4", "{ns}/frames2"],
              ["cannot open video {ns}/absent.mp4: no such file"]),
          Bad("split-broken", split + ["{ns}/broken.mp4"],
              ["cannot open video {ns}/broken.mp4: not a video OpenCV can decode"], broken_video),
          Bad("split-not-a-video", split + ["{ns}/coral.csv"],
              ["cannot open video {ns}/coral.csv: not a video OpenCV can decode"]))


def test_label_csv_without_frame_and_object_name_columns(finished, tmp_path):
    def labels(text):
        return lambda world: (places(world)["ns"] / "labels.csv").write_text(text)

    split = ["util/noscope_split.py", DATASET, "{ns}/subset2", "--infile", "{ns}/labels.csv"]
    check(finished, tmp_path,
          Bad("no-frame", split + ["--indir", "{ns}/frames"],
              ["label CSV {ns}/labels.csv has no 'frame' column (columns: label, object_name)"],
              labels("label,object_name\n3,person\n")),
          Bad("no-object_name", split + ["--indir", "{ns}/frames"],
              ["label CSV {ns}/labels.csv has no 'object_name' column (columns: frame, label)"],
              labels("frame,label\n3,person\n")),
          Bad("no-object_name-video", split + ["--video", "{ns}/coral.mp4"],
              ["label CSV {ns}/labels.csv has no 'object_name' column"], labels("frame,label\n3,person\n")),
          Bad("empty", split + ["--indir", "{ns}/frames"], ["label CSV {ns}/labels.csv is empty"], labels("")),
          Bad("folder", ["util/noscope_split.py", DATASET, "{ns}/subset2", "--infile", "{ns}/frames",
                         "--indir", "{ns}/frames"], ["label CSV {ns}/frames is a folder; pass the CSV file inside it"]))


def test_savedir_that_cannot_be_written(finished, tmp_path):
    under_a_file = "{sweep}/summary.csv/new"  # a path whose parent is a regular file (chmod does not stop root)
    savedir = ["cannot write to " + under_a_file, "Not a directory", "choose a writable savedir"]
    outdir = ["cannot write to " + under_a_file, "{sweep}/summary.csv", "choose a writable output folder"]
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--savedir", under_a_file,
                               "--data_dir", "{data}"], savedir),
          Bad("train", ["train.py", under_a_file, "--datasets", DATASET, "--data_dir", "{data}"], savedir),
          Bad("noscope_video_save", ["util/noscope_video_save.py", "{ns}/coral.mp4", under_a_file], outdir),
          Bad("noscope_split", ["util/noscope_split.py", DATASET, under_a_file, "--infile", "{ns}/coral.csv",
                                "--indir", "{ns}/frames"], outdir))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(finished, tmp_path):
    """Resuming the finished run with a learning rate of 1e30 makes epoch 2's loss NaN: the run stops before it
    writes a stats line or a checkpoint, so the last good checkpoint and stats stay as they were."""
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", *RESUME,
                               "--data_dir", "{data}", "--lr", "1e30", "--workers", "0"],
              ["error: Epoch 2. ", ": the loss became ", "lower the learning rate or check the data"]))


def test_savedir_holding_a_run_is_not_overwritten(finished, tmp_path):
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--savedir", "{run}", "--data_dir", "{data}"],
              ["{run} already holds a run: resume it with --continue_from_file {run}/current.pth",
               "or choose another --savedir"]))


def test_mixed_precision_training_without_cuda(finished, tmp_path):
    expect = ["--amp (fp16 mixed precision) needs CUDA, and this run is on cpu: drop --amp"]
    check(finished, tmp_path,
          Bad("fold_trainer", ["fold_trainer.py", "--dataset", DATASET, "--amp", "--device", "cpu",
                               "--savedir", FRESH, "--data_dir", "{data}"], expect),
          Bad("train", ["train.py", "{sweep}", "--datasets", DATASET, "--folds", "4", "--amp", "--device", "cpu",
                        "--data_dir", "{data}"], expect))


def test_ctrl_c_mid_write_is_still_one_line(capsys):
    from util.core.cli import run_command

    def interrupted_save():  # torch.save interrupted mid-write raises a RuntimeError while handling the interrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 10755520 vs 10755412")

    with pytest.raises(SystemExit) as done:
        run_command(interrupted_save, "the run is kept: run it again")
    assert done.value.code == 130 and capsys.readouterr().err == "\ninterrupted: the run is kept: run it again\n"
    with pytest.raises(ValueError):  # any other error is left to the command's own handling
        run_command(lambda: int("x"))
