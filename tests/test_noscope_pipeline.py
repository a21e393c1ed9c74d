"""NoScope data end to end: video -> 50x50 frames -> labelled train/val/test splits, and its errors."""
import csv
import sys

import cv2
import numpy as np
import pytest

from config.tasks import get_task, task_names
from datasets.synthetic import make_noscope_video
from helpers import run_cli
from datasets.noscope import csv_frame_count, label_frames, split_from_frames, split_from_video, split_ranges
from datasets.noscope import save_frames

N_FRAMES = 160  # coral: chunks of 20 frames; train = chunk 5 (100-119), val 120-139, test 140-159
SAVE = (sys.executable, "util/noscope_video_save.py")
SPLIT = (sys.executable, "util/noscope_split.py")


@pytest.fixture(scope="module")
def coral(tmp_path_factory):
    """A 160-frame synthetic coral video, its label CSV, and its frames saved by the CLI."""
    root = tmp_path_factory.mktemp("coral")
    video, labels = make_noscope_video("noscope-coral", root / "coral.mp4", root / "coral.csv", n_frames=N_FRAMES)
    result = run_cli(*SAVE, video, root / "frames")
    assert result.returncode == 0, result.stderr
    assert f"saved {N_FRAMES} frames" in result.stdout
    return root, video, labels, root / "frames"


def csv_frames(labels, name):
    with open(labels, newline="") as f:
        return {int(r["frame"]) for r in csv.DictReader(f) if r["object_name"] == name}


def tree(root):
    """{relative path: decoded pixels} of every PNG under `root`."""
    return {p.relative_to(root).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(root.rglob("*.png"))}


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_every_frame_is_saved_at_50x50(coral):
    _, _, _, frames = coral
    assert sorted(p.name for p in frames.iterdir()) == sorted(f"{i}.png" for i in range(N_FRAMES))
    for i in (0, 77, N_FRAMES - 1):
        assert cv2.imread(str(frames / f"{i}.png")).shape == (50, 50, 3)


def test_saved_frames_are_the_nearest_neighbour_resized_video_frames(coral, tmp_path):
    _, video, _, frames = coral
    cap = cv2.VideoCapture(str(video))
    for i in range(3):
        ok, frame = cap.read()
        assert ok
        expected = cv2.resize(frame, (50, 50), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(cv2.imread(str(frames / f"{i}.png")), expected)
    assert save_frames(video, tmp_path / "again") == N_FRAMES


def test_labels_follow_the_positive_object_only(coral):
    _, _, labels, _ = coral
    person, bicycle = csv_frames(labels, "person"), csv_frames(labels, "bicycle")
    assert person and bicycle - person
    assert label_frames(labels, "person", N_FRAMES) == [int(i in person) for i in range(N_FRAMES)]
    assert label_frames(labels, "person", 10) == [int(i in person) for i in range(10)]


def test_split_ranges_follow_the_task_rules():
    assert split_ranges(160, 0.125, 5) == {"train": range(100, 120), "val": range(120, 140), "test": range(140, 160)}
    assert split_ranges(2000, 0.0625, 0) == {"train": range(0, 125), "val": range(125, 250), "test": range(250, 375)}
    assert split_ranges(1003, 0.125, 1) == {"train": range(125, 250), "val": range(250, 375), "test": range(375, 500)}
    with pytest.raises(ValueError, match=r"test split \(frames 90-119.*beyond the last frame \(99\)"):
        split_ranges(100, 0.3, 1)
    with pytest.raises(ValueError, match="too few"):
        split_ranges(7, 0.125, 5)
    for name in task_names("noscope"):
        rules = get_task(name).labels
        split_ranges(1000, rules["split_fraction"], rules["train_split_index"])


def expected_tree(labels):
    person = csv_frames(labels, "person")
    splits = {"train": range(100, 120), "val": range(120, 140), "test": range(140, 160)}
    return {f"{split}/{int(i in person)}/{i}.png" for split, frames in splits.items() for i in frames}


def test_split_from_frames_puts_each_frame_in_its_split_and_class(coral, tmp_path):
    _, _, labels, frames = coral
    result = run_cli(*SPLIT, "noscope-coral", tmp_path / "subset", "--infile", labels, "--indir", frames)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "subset"
    assert set(tree(out)) == expected_tree(labels)
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*")) == [
        f"{s}/{c}" for s in ("test", "train", "val") for c in "01"]
    for rel in expected_tree(labels):
        assert (out / rel).read_bytes() == (frames / rel.split("/")[-1]).read_bytes()
    assert "train: 20 frames" in result.stdout and "test: 20 frames" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["subset"]  # no temporary folder left behind


def test_split_from_video_gives_the_same_tree_as_the_two_step_route(coral, tmp_path):
    _, video, labels, frames = coral
    split_from_frames("noscope-coral", tmp_path / "two_step", labels, frames)
    result = run_cli(*SPLIT, "synthetic-noscope-coral", tmp_path / "direct", "--infile", labels, "--video", video)
    assert result.returncode == 0, result.stderr
    two_step, direct = tree(tmp_path / "two_step"), tree(tmp_path / "direct")
    assert set(direct) == set(two_step) == expected_tree(labels)
    assert all(np.array_equal(direct[k], two_step[k]) for k in direct)


def test_the_frame_count_is_the_label_csv_s(coral, tmp_path):
    """The authors count a video's frames as the CSV's largest frame + 1; the splits follow from that count."""
    _, video, labels, frames = coral
    header, *rows = labels.read_text().splitlines()
    last = max(int(r.split(",")[0]) for r in rows if int(r.split(",")[0]) < 150)
    short = tmp_path / "short.csv"
    short.write_text("\n".join([header] + [r for r in rows if int(r.split(",")[0]) <= last]) + "\n")
    assert csv_frame_count(short) == last + 1 and csv_frame_count(labels) == N_FRAMES
    ranges = split_ranges(last + 1, 0.125, 5)
    person = csv_frames(short, "person")
    want = {f"{s}/{int(i in person)}/{i}.png" for s, frames_ in ranges.items() for i in frames_}
    assert set(tree(split_from_frames("noscope-coral", tmp_path / "a", short, frames))) == want
    assert set(tree(split_from_video("noscope-coral", tmp_path / "b", short, video))) == want

    beyond = tmp_path / "beyond.csv"
    beyond.write_text(labels.read_text() + "200,person,0.9,1,1,5,5\n")
    for source in (["--indir", frames], ["--video", video]):
        result = run_cli(*SPLIT, "noscope-coral", tmp_path / "c", "--infile", beyond, *source)
        one_line_error(result, "labels 201 frames (0-200)", "160")
        assert not (tmp_path / "c").exists()


def test_split_from_video_stops_after_the_test_chunk(tmp_path):
    """Taipei's splits are the first 3 of 16 chunks: only those frames are decoded and written."""
    video, labels = make_noscope_video("noscope-taipei", tmp_path / "t.mp4", tmp_path / "t.csv", n_frames=160)
    out = split_from_video("noscope-taipei", tmp_path / "subset", labels, video)
    names = sorted(int(p.stem) for p in out.rglob("*.png"))
    assert names == list(range(30))
    bus = csv_frames(labels, "bus")
    assert all(p.parent.name == str(int(int(p.stem) in bus)) for p in out.rglob("*.png"))


def test_csv_without_a_needed_column_is_a_one_line_error(coral, tmp_path):
    _, _, _, frames = coral
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,label,confidence\n3,person,0.9\n")
    result = run_cli(*SPLIT, "noscope-coral", tmp_path / "out", "--infile", bad, "--indir", frames)
    one_line_error(result, str(bad), "'object_name'")
    assert not (tmp_path / "out").exists()


def test_unopenable_video_is_a_one_line_error(coral, tmp_path):
    _, _, labels, _ = coral
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    one_line_error(run_cli(*SAVE, junk, tmp_path / "frames"), "cannot open video", str(junk))
    one_line_error(run_cli(*SPLIT, "noscope-coral", tmp_path / "out", "--infile", labels, "--video", junk),
                   "cannot open video", str(junk))
    one_line_error(run_cli(*SAVE, tmp_path / "missing.mp4", tmp_path / "frames"), "no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_non_noscope_task_is_a_one_line_error_listing_the_noscope_tasks(coral, tmp_path):
    _, _, labels, frames = coral
    result = run_cli(*SPLIT, "sot/timer3", tmp_path / "out", "--infile", labels, "--indir", frames)
    one_line_error(result, "not a NoScope task", ", ".join(task_names("noscope")))
    result = run_cli(*SPLIT, "noscope-nowhere", tmp_path / "out", "--infile", labels, "--indir", frames)
    one_line_error(result, "unknown task 'noscope-nowhere'", "noscope-coral")


def test_missing_frames_dir_and_existing_output_are_errors(coral, tmp_path):
    _, _, labels, frames = coral
    one_line_error(run_cli(*SPLIT, "noscope-coral", tmp_path / "out", "--infile", labels, "--indir", tmp_path / "none"),
                   "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli(*SPLIT, "noscope-coral", tmp_path / "out", "--infile", labels, "--indir", tmp_path / "empty"),
                   "holds no <frame index>.png files")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    one_line_error(run_cli(*SPLIT, "noscope-coral", tmp_path / "full", "--infile", labels, "--indir", frames),
                   "already exists and is not empty")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_help_works():
    for script in (SAVE, SPLIT):
        result = run_cli(*script, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout
