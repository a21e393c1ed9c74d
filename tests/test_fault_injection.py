"""Kill a training run with SIGKILL at many moments, resume it each time, and get the same run."""
import json
import random
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from helpers import REPO, assert_same_stats, write_image_folder

TASK, FOLD, EPOCHS = "noscope-taipei", 2, 8  # a 31 MB checkpoint: its writes take long enough to be hit

pytestmark = pytest.mark.slow  # kills and restarts training processes


def command(savedir, data_dir):
    argv = [sys.executable, "fold_trainer.py", "--dataset", TASK, "--fold", str(FOLD), "--epochs", str(EPOCHS),
            "--savedir", str(savedir), "--data_dir", str(data_dir), "--device", "cpu", "--workers", "0"]
    if (savedir / "current.pth").exists():
        argv += ["--continue_from_file", str(savedir / "current.pth")]
    return argv


def launch(savedir, data_dir, **popen):
    """Start the training run in the background, its stderr kept in a file (a full pipe would stall it)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command(savedir, data_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, **popen)
    proc.log = log
    return proc


def errors(proc):
    proc.log.seek(0)
    return proc.log.read().decode()


def temporary_files(savedir):
    return [*savedir.glob(".*.tmp"), *(savedir / "stats").glob(".*.tmp")] if savedir.exists() else []


def checkpoint_being_written(savedir):
    return any(p.name.startswith((".current.pth.", ".best.pth.")) for p in temporary_files(savedir))


def run_with_kills(savedir, data_dir, rng, first_epoch_seconds, kills_wanted=6):
    """Start, kill and restart until `kills_wanted` kills happened, then let the run finish.

    The kills rotate between: while a checkpoint is being written, right after an epoch's stats
    line, and at a random moment (anywhere: start-up, data loading, mid-epoch). The random moment
    is a fraction of `first_epoch_seconds`, the time this machine took, in the reference run, from
    start to the first stats line: so no run lives long enough to get more than about one epoch
    further, on a slow machine or a fast one, and the run cannot finish before the kills are done.
    """
    kinds, during_checkpoint = [], 0
    while len(kinds) < kills_wanted:
        kind = ["during a checkpoint write", "after a stats line", "random"][len(kinds) % 3]
        lines_before = stats_lines(savedir)
        start, delay = time.monotonic(), rng.uniform(0.1, 0.9) * first_epoch_seconds
        proc = launch(savedir, data_dir)
        while proc.poll() is None:
            writing = checkpoint_being_written(savedir)
            if ((kind == "during a checkpoint write" and writing)
                    or (kind == "after a stats line" and stats_lines(savedir) > lines_before)
                    or (kind == "random" and time.monotonic() - start > delay)):
                proc.kill()
                proc.wait()
                kinds.append(kind)
                during_checkpoint += writing
                break
            time.sleep(0.0005)
        else:
            assert proc.returncode == 0, errors(proc)
            return kinds, during_checkpoint, True
    done = subprocess.run(command(savedir, data_dir), cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    return kinds, during_checkpoint, False


def timed_run(savedir, data_dir):
    """Run to the end uninterrupted; returns the seconds from start to the first stats line."""
    began, first = time.monotonic(), None
    proc = launch(savedir, data_dir)
    while proc.poll() is None:
        if first is None and stats_lines(savedir) > 0:
            first = time.monotonic() - began
        time.sleep(0.0005)
    assert proc.returncode == 0, errors(proc)
    assert first is not None, "the reference run wrote no stats line while it ran"
    return first


def stats_lines(savedir):
    path = savedir / "stats" / "train_loss.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_run(tmp_path):
    data_dir = tmp_path / "data"
    write_image_folder(data_dir / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 6, 6))
    reference = tmp_path / "reference"
    first_epoch_seconds = timed_run(reference, data_dir)

    killed = tmp_path / "killed"
    kinds, during_checkpoint, finished_early = run_with_kills(killed, data_dir, random.Random(0), first_epoch_seconds)
    assert not finished_early and len(kinds) >= 5 and during_checkpoint >= 2, (kinds, during_checkpoint)

    assert temporary_files(killed) == []
    assert_same_stats(reference, killed)
    for name in ("current.pth", "best.pth"):
        want, got = (torch.load(d / name, weights_only=True) for d in (reference, killed))
        assert got["epoch"] == want["epoch"] and got["best"] == want["best"], name
        for key, tensor in want["model"].items():
            assert torch.equal(got["model"][key], tensor), (name, key)
        for a, b in zip(want["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
            assert all(torch.equal(a[k], b[k]) for k in a), name
    want, got = (json.loads((d / "result.json").read_text()) for d in (reference, killed))
    for timing in ("train_images_per_sec", "train_seconds"):  # the clock's, not the run's
        assert want.pop(timing) > 0 and got.pop(timing) > 0
    assert got == want


def interruptible():
    """Ctrl-C's default action in the child, even where this test runs in the background of a shell that ignores
    SIGINT there (the child would inherit that and never see the interrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path):
    data_dir = tmp_path / "data"
    write_image_folder(data_dir / f"{TASK}-subset", ["0", "1"], (50, 50), per_split=(24, 6, 6))
    savedir = tmp_path / "run"
    proc = launch(savedir, data_dir, preexec_fn=interruptible)
    while proc.poll() is None and stats_lines(savedir) < 1:  # interrupt once an epoch has been kept
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    lines = errors(proc).strip().splitlines()
    assert "Traceback" not in errors(proc) and lines[-1] == (
        "interrupted: the run's last finished epoch is kept in --savedir: add --continue_from_file "
        "SAVEDIR/current.pth to the same command to resume")
    resumed = launch(savedir, data_dir)  # with --continue_from_file: it goes on to the end
    assert resumed.wait(timeout=600) == 0, errors(resumed)
    assert stats_lines(savedir) == EPOCHS
