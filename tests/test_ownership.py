"""Jobs sharing a savedir hold its runs one at a time (util.train.ownership), and a write that fails ends a command with
one line (util.core.files.WriteFailed)."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from config.tasks import get_task
from helpers import REPO, assert_same_stats, run_cli, write_image_folder
from util.train import ownership, trainer
from util.train.checkpoint import load_classifier

GAME = "sot/coin_count-digits_3_4-v2"  # 15 classes, 17 x 40: a 0.5 MB checkpoint at f=1
EPOCHS = "3"


def run_of(savedir, fold, leaf="fold"):
    """The run directory of GAME at `fold` (multiplier sqrt(f)); `leaf`: fold or distill, the recipe of f > 1."""
    return savedir / GAME / f"fold{fold}" / f"multiplier{fold ** 0.5:.4g}" / (leaf if fold > 1 else "none")


def sweep_argv(savedir, data_root, *folds, extra=(), epochs=EPOCHS):
    return [sys.executable, "train.py", savedir, "--datasets", GAME, "--folds", *map(str, folds), "--epochs", epochs,
            "--data_root", data_root, "--workers", "0", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    root = tmp_path_factory.mktemp("games")
    task = get_task(GAME)
    write_image_folder(root / GAME, task.class_names, task.input_shape[1:], per_split=(4, 2, 2))
    return root


@pytest.fixture(scope="module")
def reference(games, tmp_path_factory):
    """One sweep alone: the stats every way of sharing its runs must give."""
    savedir = tmp_path_factory.mktemp("reference")
    done = run_cli(*sweep_argv(savedir, games, 1, 2, 3))
    assert done.returncode == 0, done.stderr
    return savedir


def start(argv, lease=60):
    """Start a command in the background, its output kept in files (a full pipe would stall it)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    env = dict(os.environ, FOLDEDCNN_LEASE_SECONDS=str(lease))
    proc = subprocess.Popen([str(a) for a in argv], cwd=REPO, stdout=out, stderr=err, env=env)
    proc.out, proc.err = out, err
    return proc


def output(proc, stream="out"):
    f = getattr(proc, stream)
    f.seek(0)
    return f.read()


def finish(proc):
    proc.wait(timeout=600)
    return proc.returncode, output(proc), output(proc, "err")


def wait_until(condition, proc, what):
    while not condition():
        assert proc.poll() is None, f"the job ended before {what}: {output(proc, 'err')}"
        time.sleep(0.01)


def stats_lines(run):
    path = run / "stats" / "train_loss.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def plant_lock(run, host, age, lease):
    """The lock file a job on `host` holding `run` leaves (filelock's SoftFileLease record), renewed `age` s ago."""
    run.mkdir(parents=True)
    lock = run / ownership.RUN_LOCK
    lock.write_text(f"filelock/2\npid=4242\nhost={host}\nmode=lease\ntoken={'ab' * 16}\nduration={lease!r}\n")
    os.utime(lock, (time.time() - age, time.time() - age))


@pytest.mark.slow
def test_two_sweeps_started_together_share_the_runs(games, reference, tmp_path):
    savedir = tmp_path / "runs"
    jobs = [start(sweep_argv(savedir, games, 1, 2, 3)) for _ in range(2)]
    results = [finish(job) for job in jobs]
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    said = "".join(out for _, out, _ in results)
    assert said.count(f"training {EPOCHS} epochs into") == 3  # each run trained once, by one of the two
    for fold in (1, 2, 3):
        assert_same_stats(run_of(reference, fold), run_of(savedir, fold))
        assert not (run_of(savedir, fold) / ownership.RUN_LOCK).exists()
    rows = (savedir / "summary.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[1] for row in rows) == ["1", "2", "3"]  # every run listed once


@pytest.mark.slow
def test_a_student_waits_for_the_teacher_another_job_trains(games, tmp_path):
    alone = tmp_path / "alone"
    distill = ["--recipe", "distill", "--student_epochs", "3"]  # not timed: the same epochs alone and shared
    assert run_cli(*sweep_argv(alone, games, 1, 2, extra=distill)).returncode == 0
    savedir = tmp_path / "runs"
    teacher_job = start(sweep_argv(savedir, games, 1), lease=30)
    wait_until(lambda: stats_lines(run_of(savedir, 1)) >= 1, teacher_job, "its first epoch")
    teacher_job.send_signal(signal.SIGSTOP)  # so that the student's job surely meets the teacher unfinished
    student_job = start(sweep_argv(savedir, games, 1, 2, extra=distill), lease=30)
    try:
        wait_until(lambda: "waiting for teachers" in output(student_job), student_job, "it waited")
    finally:
        teacher_job.send_signal(signal.SIGCONT)
    assert finish(teacher_job)[0] == 0
    code, out, err = finish(student_job)
    assert code == 0, err
    pid = teacher_job.pid
    assert f"waiting for teachers that other jobs are training: {GAME} fold 1 (process {pid} on " in out
    assert f"{GAME} fold 1: finished earlier, skipping" in out and "taking over" not in out
    student = run_of(savedir, 2, "distill")
    assert_same_stats(run_of(alone, 2, "distill"), student)
    teacher, _ = load_classifier(run_of(savedir, 1))
    cached = torch.load(student / "teacher_logits_train.pt", weights_only=True)
    assert cached["teacher"] == trainer.weights_digest(teacher)  # the finished teacher's logits
    rows = (savedir / "summary.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[1] for row in rows) == ["1", "2"]


@pytest.mark.slow
def test_a_killed_holder_is_taken_over_and_its_run_resumed(games, reference, tmp_path):
    savedir = tmp_path / "runs"
    job = start(sweep_argv(savedir, games, 1))
    wait_until(lambda: (run_of(savedir, 1) / "current.pth").exists() and stats_lines(run_of(savedir, 1)) >= 1,
               job, "its first checkpoint")
    job.kill()
    job.wait()
    assert (run_of(savedir, 1) / ownership.RUN_LOCK).exists()  # left behind, naming the dead process
    done = run_cli(*sweep_argv(savedir, games, 1))
    assert done.returncode == 0, done.stderr
    assert f"{GAME} fold 1: taking over from process {job.pid} on " in done.stdout
    assert f"{GAME} fold 1: resuming from" in done.stdout
    assert_same_stats(run_of(reference, 1), run_of(savedir, 1))


def test_a_stale_lock_from_another_host_is_taken_over(games, tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "LEASE_SECONDS", 0.5)
    monkeypatch.setattr(ownership, "HEARTBEAT_SECONDS", 0.1)
    savedir = tmp_path / "runs"
    plant_lock(run_of(savedir, 1), "lost-machine", age=3600, lease=0.5)
    done = run_cli(*sweep_argv(savedir, games, 1, epochs="1"))
    assert done.returncode == 0, done.stderr
    assert f"{GAME} fold 1: process 4242 on lost-machine has not renewed its lock for 3600 s" in done.stdout
    assert f"{GAME} fold 1: taking over from process 4242 on lost-machine, which no longer holds it" in done.stdout
    assert (run_of(savedir, 1) / "result.json").exists() and not (run_of(savedir, 1) / ownership.RUN_LOCK).exists()


def test_a_run_another_host_holds_is_left_to_it_and_not_resumed(games, tmp_path):
    savedir = tmp_path / "runs"
    other = tmp_path / "other"  # a checkpoint of the same run, to resume from
    assert run_cli(sys.executable, "fold_trainer.py", "--dataset", GAME, "--savedir", other, "--epochs", "1",
                   "--data_root", games, "--workers", "0", "--device", "cpu").returncode == 0
    plant_lock(run_of(savedir, 1), "busy-machine", age=0, lease=ownership.LEASE_SECONDS)
    done = run_cli(*sweep_argv(savedir, games, 1))
    assert done.returncode == 0, done.stderr
    assert f"left to other jobs: {GAME} fold 1 (process 4242 on busy-machine)" in done.stdout
    assert sorted(p.name for p in run_of(savedir, 1).iterdir()) == [ownership.RUN_LOCK]  # untouched
    refused = run_cli(sys.executable, "fold_trainer.py", "--dataset", GAME, "--savedir", run_of(savedir, 1),
                      "--epochs", "2", "--data_root", games, "--workers", "0", "--device", "cpu",
                      "--continue_from_file", other / "current.pth")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: {run_of(savedir, 1)} is held by process 4242 on busy-machine (its lock "
        f"{run_of(savedir, 1) / ownership.RUN_LOCK}, renewed 0 s ago): let that job finish, or stop it and run this "
        "command again"]


def test_a_job_whose_lock_was_taken_over_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "LEASE_SECONDS", 0.5)
    monkeypatch.setattr(ownership, "HEARTBEAT_SECONDS", 0.1)
    lock = tmp_path / "run" / ownership.RUN_LOCK
    with ownership.holding(lock, "the run"):
        ownership.check_held(lock, "the run")  # still ours
        lock.unlink()  # as a job that found it unrenewed and took it over
        time.sleep(0.5)  # the heartbeat notices
        with pytest.raises(ownership.RunHeld, match="the run was taken over by another job .*this job stops here"):
            ownership.check_held(lock, "the run")


# Runs a command (argv after BUDGET and FOLDER) with every file under FOLDER opened for writing sharing BUDGET bytes,
# past which a write fails as a full disk's does: where the test cannot mount a small tmpfs.
FULL_DISK = """
import builtins, errno, os, runpy, sys
left, folder = [int(sys.argv[1])], os.path.abspath(sys.argv[2])
real_open = builtins.open
class Filling:
    def __init__(self, f): self.f = f
    def write(self, data):
        left[0] -= len(data)
        if left[0] < 0: raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)
    def __getattr__(self, name): return getattr(self.f, name)
    def __enter__(self): return self
    def __exit__(self, *exc): return self.f.__exit__(*exc)
def open_filling(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    writes = isinstance(path, (str, os.PathLike)) and ("w" in mode or "a" in mode)
    return Filling(f) if writes and os.path.abspath(path).startswith(folder) else f
builtins.open = open_filling
sys.argv = sys.argv[3:]
sys.path.insert(0, os.getcwd())
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture
def small_disk(tmp_path):
    """(folder of 1 MB, how to run a command writing there): a tmpfs where this test may mount one, else a folder
    whose writes fail past 1 MB (FULL_DISK). A run of GAME at f=1 fills it in its second epoch."""
    folder, size = tmp_path / "small", 1024 * 1024
    folder.mkdir()
    mounted = shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                                                       capture_output=True).returncode == 0
    if mounted:
        yield folder, lambda argv: argv
        subprocess.run(["umount", folder], check=True)
    else:
        yield folder, lambda argv: [sys.executable, "-c", FULL_DISK, str(size), str(folder), *argv[1:]]


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_with_one_line_and_loadable_files(games, reference, small_disk, tmp_path):
    folder, command = small_disk
    savedir = folder / "runs"
    done = run_cli(*command(sweep_argv(savedir, games, 1)), new_process=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {run_of(savedir, 1)}/") and last.endswith(
        ": No space left on device; free space, then run the same command to resume"), last
    run = run_of(savedir, 1)
    for checkpoint in run.glob("*.pth"):
        torch.load(checkpoint, weights_only=True)
    json.loads((run / "run.json").read_text())
    assert not list(run.glob(".*.tmp")) and not (run / ownership.RUN_LOCK).exists()

    moved = tmp_path / "runs"  # on a larger disk, the same command resumes and finishes the uninterrupted run
    shutil.copytree(savedir, moved)
    again = run_cli(*sweep_argv(moved, games, 1))
    assert again.returncode == 0 and f"{GAME} fold 1: resuming from" in again.stdout, again.stderr
    assert_same_stats(run_of(reference, 1), run_of(moved, 1))


def test_a_write_that_fails_names_the_file_the_cause_and_the_way_on(tmp_path):
    from util.core.files import WriteFailed, save_atomic
    full = WriteFailed(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.pth"))
    assert str(full) == f"cannot write {tmp_path / 'x.pth'}: No space left on device; free space" and not full.bad_path
    with pytest.raises(WriteFailed, match="No such file or directory; create its folder or choose another path"):
        save_atomic({"a": torch.zeros(2)}, tmp_path / "missing" / "x.pth")
