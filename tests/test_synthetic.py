"""The synthetic game-scraping tree and NoScope video: shapes, counts, determinism, atomic writes."""
import csv
import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets.synthetic import game as synthetic_game
from config.tasks import get_task
from datasets.synthetic import font_files, make_game_dataset, make_noscope_video

COIN = "sot/coin_count-digits_3_4-v2"


def tree_hashes(root):
    """{relative path: sha256} of every PNG under `root`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_font_files_are_real_truetype_fonts():
    fonts = font_files()
    assert len(fonts) >= 4 and all(f.suffix == ".ttf" and f.is_file() for f in fonts)
    assert {f.name for f in fonts} >= {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf"}


@pytest.mark.parametrize("task", [COIN, "lol/timer-minutes"])
def test_game_tree_has_every_class_in_every_split_at_the_task_size(tmp_path, task):
    spec = get_task(task)
    root = make_game_dataset(task, tmp_path / "game", per_class=(3, 2, 1))
    assert root == tmp_path / "game"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(spec.class_names)
        for name in spec.class_names:
            files = sorted(p.name for p in (root / split / name).iterdir())
            assert files == [f"{i}.png" for i in range(n)]
    _, h, w = spec.input_shape
    for path in root.rglob("*.png"):
        with Image.open(path) as img:
            assert img.mode == "RGB" and img.size == (w, h)
    assert [p.name for p in tmp_path.iterdir()] == ["game"]  # no temporary sibling left behind


def test_game_images_show_the_text_with_contrast(tmp_path):
    """Text images have light ink over a dark background; `other` images vary too."""
    root = make_game_dataset(COIN, tmp_path / "game", per_class=(8, 1, 1))
    for name in ("1", "14", "other"):
        for path in (root / "train" / name).glob("*.png"):
            pixels = np.asarray(Image.open(path), dtype=np.float32).mean(axis=2)
            if name != "other":
                assert np.percentile(pixels, 99) - np.percentile(pixels, 10) > 60, path
            assert pixels.std() > 1, path


def test_game_tree_is_deterministic_by_seed(tmp_path):
    a = tree_hashes(make_game_dataset(COIN, tmp_path / "a", per_class=(2, 1, 1), seed=7))
    b = tree_hashes(make_game_dataset(COIN, tmp_path / "b", per_class=(2, 1, 1), seed=7))
    c = tree_hashes(make_game_dataset(COIN, tmp_path / "c", per_class=(2, 1, 1), seed=8))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_an_existing_complete_tree_is_reused_and_a_foreign_one_refused(tmp_path):
    root = make_game_dataset(COIN, tmp_path / "game", per_class=(1, 1, 1))
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert make_game_dataset(COIN, root, per_class=(1, 1, 1)) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == before
    with pytest.raises(ValueError, match="exists but is not a complete synthetic tree"):
        make_game_dataset(COIN, root, per_class=(1, 1, 1), seed=1)
    with pytest.raises(ValueError, match="noscope task"):
        make_game_dataset("noscope-coral", tmp_path / "x")


def test_an_interrupted_game_generation_leaves_nothing_at_root(tmp_path, monkeypatch):
    calls = []
    real = synthetic_game.render_game_image

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_game, "render_game_image", failing)
    with pytest.raises(KeyboardInterrupt):
        make_game_dataset(COIN, tmp_path / "game", per_class=(2, 1, 1))
    assert list(tmp_path.iterdir()) == []


def read_labels(csv_path):
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def decoded_frames(video):
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_noscope_video_and_csv(tmp_path):
    video, labels = make_noscope_video("noscope-night", tmp_path / "night.mp4", tmp_path / "night.csv",
                                       n_frames=400, size=(160, 120), seed=3)
    frames = decoded_frames(video)
    assert len(frames) == 400 and frames[0].shape == (120, 160, 3)
    rows = read_labels(labels)
    assert list(rows[0]) == ["frame", "object_name", "confidence", "xmin", "ymin", "xmax", "ymax"]
    names = {r["object_name"] for r in rows}
    assert names == {"car", "bicycle"}
    car = sorted({int(r["frame"]) for r in rows if r["object_name"] == "car"})
    bicycle = {int(r["frame"]) for r in rows if r["object_name"] == "bicycle"}
    assert 0.3 <= len(car) / 400 <= 0.5
    assert bicycle - set(car)  # the distractor shows where the positive object does not
    appearances = 1 + sum(b != a + 1 for a, b in zip(car, car[1:]))
    assert appearances >= 6
    assert all(any(k * 50 <= f < (k + 1) * 50 for f in car) for k in range(8))  # spread over the video
    for r in rows:
        x0, y0, x1, y1 = (int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120 and 0.5 <= float(r["confidence"]) < 1


def test_noscope_positive_object_is_visible_at_50x50(tmp_path):
    """Frames with the object differ clearly from object-free frames after the 50x50 resize."""
    video, labels = make_noscope_video("synthetic-noscope-coral", tmp_path / "v.mp4", tmp_path / "v.csv",
                                       n_frames=120, seed=1)
    small = [cv2.resize(f, (50, 50), interpolation=cv2.INTER_NEAREST).astype(np.float32)
             for f in decoded_frames(video)]
    rows = read_labels(labels)
    person = {int(r["frame"]) for r in rows if r["object_name"] == "person"}
    empty = [i for i in range(120) if i not in {int(r["frame"]) for r in rows}]
    reference = np.median([small[i] for i in empty], axis=0)
    changed = [(np.abs(small[i] - reference).max(axis=2) > 60).sum() for i in range(120)]
    assert min(changed[i] for i in person) >= 30  # pixels of the 50x50 frame showing the person
    assert max(changed[i] for i in empty) < 5


def test_noscope_video_is_deterministic_by_seed(tmp_path):
    def make(name, seed):
        return make_noscope_video("noscope-taipei", tmp_path / f"{name}.mp4", tmp_path / f"{name}.csv",
                                  n_frames=60, seed=seed)

    (va, ca), (vb, cb), (vc, cc) = make("a", 0), make("b", 0), make("c", 1)
    assert ca.read_bytes() == cb.read_bytes() != cc.read_bytes()
    fa, fb, fc = decoded_frames(va), decoded_frames(vb), decoded_frames(vc)
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb)) and len(fa) == len(fb) == 60
    assert not np.array_equal(fa[0], fc[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.mp4", "b.csv", "b.mp4", "c.csv", "c.mp4"]


def test_noscope_video_needs_a_noscope_task(tmp_path):
    with pytest.raises(ValueError, match="game task"):
        make_noscope_video(COIN, tmp_path / "v.mp4", tmp_path / "v.csv")
