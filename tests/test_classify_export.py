"""Production tools: util/classify_video.py (every frame of a video) and util/export.py (ONNX), and their errors."""
import csv
import sys

import cv2
import numpy as np
import onnxruntime
import pytest
import torch
from torchvision.transforms import ToTensor

import fold_trainer
from datasets.loaders import read_rgb
from datasets.synthetic import make_noscope_video
from helpers import run_cli, train_args
from models import build_classifier
from util import classify_video, export
from util.deploy import onnx as onnx_export, video as video_lib
from util.train.checkpoint import load_classifier
from datasets.noscope import split_from_video

FOLD = 4
N_FRAMES = 4 * 40 + 3  # not a multiple of f: the last group is padded
CLASSIFY = (sys.executable, "util/classify_video.py")
EXPORT = (sys.executable, "util/export.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic coral video, its splits, and a fold-4 run of fold_trainer.py (1 epoch) on them.

    The low learning rate keeps the softmax scores well below 1, so that they show any change of inputs.
    """
    root = tmp_path_factory.mktemp("production")
    video, labels = make_noscope_video("noscope-coral", root / "coral.mp4", root / "coral.csv", n_frames=N_FRAMES)
    split_from_video("noscope-coral", root / "data" / "synthetic-noscope-coral-subset", labels, video)
    argv = ["--dataset", "synthetic-noscope-coral", "--fold", str(FOLD), "--savedir", str(root / "run"), "--epochs",
            "1", "--lr", "1e-4", "--workers", "0", "--device", "cpu", "--data_dir", str(root / "data")]
    train_args(fold_trainer.get_args_parser().parse_args(argv))
    return root, video, root / "run" / "best.pth"


def by_hand(video, checkpoint):
    """(label, score) per frame: frames resized and ToTensor'd one by one, f at a time through the bare network."""
    classifier = build_classifier("noscope-coral", FOLD)
    classifier.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    net = classifier.net.eval()
    cap = cv2.VideoCapture(str(video))
    images = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(frame, (50, 50), interpolation=cv2.INTER_NEAREST), cv2.COLOR_BGR2RGB)
        images.append(ToTensor()(rgb))
    cap.release()
    rows = []
    for start in range(0, len(images), FOLD):
        group = images[start:start + FOLD]
        real = len(group)
        group += [group[-1]] * (FOLD - real)  # the last group: the last frame repeated
        with torch.no_grad():
            logits = net(torch.cat(group)[None]).reshape(FOLD, -1)
        scores, labels = torch.softmax(logits, dim=1).max(dim=1)
        rows += [(str(label), score) for label, score in zip(labels.tolist()[:real], scores.tolist()[:real])]
    return images, rows


def read_predictions(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["frame", "label", "score"]
        return [(int(frame), label, float(score)) for frame, label, score in reader]


def test_every_frame_is_classified_as_the_model_does_frame_by_frame(trained, tmp_path):
    root, video, checkpoint = trained
    out = tmp_path / "predictions.csv"
    result = run_cli(*CLASSIFY, video, checkpoint, "--out", out, "--batch_size", "10")  # 8 images: 20 batches + 3
    assert result.returncode == 0, result.stderr
    assert f"classified {N_FRAMES} frames" in result.stdout and "noscope-coral fold 4" in result.stdout
    assert "(trained on synthetic-noscope-coral)" in result.stdout  # the data its labels come from
    assert "note: this model was trained on generated stand-in data (synthetic-noscope-coral)" in result.stdout
    assert "frame/s" in result.stderr  # the progress bar
    got = read_predictions(out)
    images, expected = by_hand(video, checkpoint)
    assert [frame for frame, _, _ in got] == list(range(N_FRAMES))
    assert [label for _, label, _ in got] == [label for label, _ in expected]
    assert np.allclose([s for _, _, s in got], [s for _, s in expected], atol=1e-5)
    assert {label for _, label, _ in got} <= {"0", "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary file left
    for frame in (100, 130, 159):  # the hand-made inputs are exactly what training read from the split PNGs
        png = next((root / "data" / "synthetic-noscope-coral-subset").glob(f"*/*/{frame}.png"))
        assert torch.equal(images[frame], ToTensor()(read_rgb(png)))
    one_batch = video_lib.classify_video(video, root / "run", tmp_path / "one.csv", device="cpu")
    assert one_batch["frames"] == N_FRAMES and sum(one_batch["labels"].values()) == N_FRAMES
    assert [row[1] for row in read_predictions(tmp_path / "one.csv")] == [label for _, label, _ in got]


def test_frame_tensor_is_the_training_input(trained):
    _, video, _ = trained
    cap = cv2.VideoCapture(str(video))
    frame = cap.read()[1]
    cap.release()
    rgb = cv2.cvtColor(cv2.resize(frame, (50, 50), interpolation=cv2.INTER_NEAREST), cv2.COLOR_BGR2RGB)
    assert torch.equal(video_lib.frame_tensor(frame), ToTensor()(rgb))


@pytest.mark.slow
def test_onnx_export_matches_pytorch(trained, tmp_path):
    _, video, checkpoint = trained
    classifier, _ = load_classifier(checkpoint)
    result = run_cli(*EXPORT, checkpoint, tmp_path / "folded.onnx")
    assert result.returncode == 0, result.stderr
    assert "input x: N x 12 x 50 x 50, output logits: N x 8" in result.stdout
    assert "max abs difference" in result.stdout
    assert "fold 4 (trained on synthetic-noscope-coral)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("note: this model was trained on generated stand-in data")
    x = torch.rand(5, 3 * FOLD, 50, 50)
    session = onnxruntime.InferenceSession(str(tmp_path / "folded.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.allclose(session.run(None, {"x": x.numpy()})[0], classifier.net(x).numpy(), atol=1e-4)

    summary = onnx_export.export(checkpoint, tmp_path / "images.onnx", images=True)
    assert summary["input"] == "N x 3 x 50 x 50 (N a multiple of 4)" and summary["output"] == "N x 2"
    images = torch.rand(12, 3, 50, 50)
    session = onnxruntime.InferenceSession(str(tmp_path / "images.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.allclose(session.run(None, {"x": images.numpy()})[0], classifier(images).numpy(), atol=1e-4)


@pytest.mark.slow
def test_an_exported_onnx_classifies_the_video_as_its_checkpoint_does(trained, tmp_path):
    """classify_video.py takes the .onnx export (folded inputs or plain images, fp32): the same labels as best.pth,
    the same scores to rounding, the task, fold and training data read from the file's metadata."""
    _, video, checkpoint = trained
    video_lib.classify_video(video, checkpoint, tmp_path / "pth.csv", batch_size=16, device="cpu")
    expected = read_predictions(tmp_path / "pth.csv")
    for images in (False, True):
        onnx_file = tmp_path / f"model{int(images)}.onnx"
        onnx_export.export(checkpoint, onnx_file, images=images)
        result = run_cli(*CLASSIFY, video, onnx_file, "--out", tmp_path / "onnx.csv", "--batch_size", "16")
        assert result.returncode == 0, result.stderr
        assert "noscope-coral fold 4 (trained on synthetic-noscope-coral) on cpu" in result.stdout
        got = read_predictions(tmp_path / "onnx.csv")
        assert [row[:2] for row in got] == [row[:2] for row in expected]
        assert np.allclose([row[2] for row in got], [row[2] for row in expected], atol=1e-4)


def test_a_file_that_is_no_checkpoint_is_named_without_advice_to_unpickle_it(trained, tmp_path, capsys):
    _, video, _ = trained
    pickled = tmp_path / "model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a whole module: loading it would run code
    fail(classify_video.main, [video, pickled, "--out", tmp_path / "o.csv"], capsys,
         f"cannot read checkpoint {pickled}: not a checkpoint (it holds objects other than tensors and plain data")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"not protobuf at all")
    fail(classify_video.main, [video, onnx_file, "--out", tmp_path / "o.csv"], capsys,
         f"cannot read {onnx_file} as an ONNX model: give a .onnx file written by util/export.py")
    from util.train.checkpoint import read_checkpoint
    with pytest.raises(ValueError, match="an exported ONNX model, not a checkpoint") as error:
        read_checkpoint(onnx_file)
    assert "weights_only" not in str(error.value)


def test_export_mismatch_exits_1_and_writes_nothing(trained, tmp_path, monkeypatch, capsys):
    _, _, checkpoint = trained
    monkeypatch.setattr(onnx_export, "onnx_model", lambda *args: b"not used")
    monkeypatch.setattr(onnx_export, "onnx_difference", lambda *args: (0.5, 3.0))
    with pytest.raises(SystemExit) as exited:
        export.main([str(checkpoint), str(tmp_path / "m.onnx")])
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip() == (f"error: ONNX Runtime's logits differ from PyTorch's by 0.5 (tolerance "
                                               f"0.0031, largest logit 3); {tmp_path / 'm.onnx'} was not written")
    assert not (tmp_path / "m.onnx").exists()


def fail(main, argv, capsys, *fragments):
    """main(argv) exits 2 with one `error: ...` line holding every fragment."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_errors_are_one_line_with_exit_status_2(trained, tmp_path, capsys):
    _, video, checkpoint = trained
    state = torch.load(checkpoint, weights_only=True)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint" * 10)
    weights_only = tmp_path / "weights.pth"
    torch.save(state["model"], weights_only)
    wrong_fold = tmp_path / "fold2.pth"
    torch.save({**state, "model_args": {**state["model_args"], "fold": 2}}, wrong_fold)
    game = tmp_path / "game.pth"
    torch.save({**state, "model_args": {"task": "sot/timer3", "fold": FOLD, "multiplier": 2.0},
                "model": build_classifier("sot/timer3", FOLD, 2.0).state_dict()}, game)
    out = tmp_path / "out.csv"
    main = classify_video.main

    fail(main, [tmp_path / "none.mp4", checkpoint, "--out", out], capsys, "cannot open video", "no such file")
    fail(main, [video, tmp_path / "none.pth", "--out", out], capsys, "none.pth: no such file")
    fail(main, [video, junk, "--out", out], capsys, f"cannot read checkpoint {junk}")
    fail(main, [video, weights_only, "--out", out], capsys, "is not a FoldedCNN checkpoint of this repository")
    fail(main, [video, wrong_fold, "--out", out], capsys, "weights do not fit noscope-coral's FoldedCNN at fold 2")
    fail(main, [video, game, "--out", out], capsys, "is for sot/timer3, a game task", "HUD", "noscope-coral")
    fail(main, [video, checkpoint, "--out", tmp_path / "no" / "out.csv"], capsys, "cannot write", "No such file")
    fail(main, [video, checkpoint, "--out", tmp_path], capsys, "is a directory")
    fail(main, [video, checkpoint, "--out", out, "--batch_size", "3"], capsys, "smaller than the fold 4")
    if not torch.cuda.is_available():
        fail(main, [video, checkpoint, "--out", out, "--device", "cuda"], capsys, "CUDA is not available")
    fail(export.main, [tmp_path / "none.pth", tmp_path / "m.onnx"], capsys, "no such file")
    fail(export.main, [weights_only, tmp_path / "m.onnx"], capsys, "is not a FoldedCNN checkpoint")
    fail(export.main, [checkpoint, tmp_path / "no" / "m.onnx"], capsys, "no directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold2.pth", "game.pth", "junk.pth", "weights.pth"]

    bad_video = tmp_path / "junk.mp4"
    bad_video.write_bytes(b"not a video" * 100)
    result = run_cli(*CLASSIFY, bad_video, checkpoint, "--out", out)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: cannot open video {bad_video}: not a video OpenCV can decode"]
    assert not out.exists()


def test_help(capsys):
    for main in (classify_video.main, export.main):
        with pytest.raises(SystemExit) as exited:
            main(["--help"])
        assert exited.value.code == 0 and "usage:" in capsys.readouterr().out
