"""FLOP counts (flop_count.sh, config/model_map.json), arithmetic intensity (ai.py), FLOPs/sec."""
import contextlib
import csv
import io
import json
import sys

import pytest
import torch

import ai
from config.tasks import all_tasks
from models import build_model
from models.flops import MODEL_MAP, arithmetic_intensity, count_flops, count_model_flops, flops_per_image, load_model_map

from helpers import REPO, run_cli


@pytest.fixture(scope="module")
def flop_count_output():
    """What ./flop_count.sh prints now (run once for the module)."""
    done = run_cli("./flop_count.sh")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_flop_count_prints_the_16_models(flop_count_output):
    tasks = all_tasks().values()
    expected = {t.model_map_key for t in tasks} | {t.efficientnet_key for t in tasks if t.compound_scaling_baseline}
    assert set(flop_count_output) == expected and len(expected) == 16
    assert {"noscope_coral", "cifar10", "cifar100", "efficientnet-game_sot/timer3"} <= expected
    for key, counts in flop_count_output.items():
        wanted = ["og_ops", "fold2_ops"] if key.startswith("efficientnet-") else ["og_ops", "fold2_ops", "fold3_ops", "fold4_ops"]
        assert list(counts) == wanted
        assert all(isinstance(v, int) and v > 0 for v in counts.values())


def test_committed_model_map_is_what_flop_count_computes_now(flop_count_output):
    assert load_model_map() == flop_count_output, "config/model_map.json is stale: run ./flop_count.sh --write"


def test_flop_count_is_twice_the_macs_of_one_input():
    # noscope-coral, by hand: conv 3->16 and 16->16 at 50x50, linear 16*25*25 -> 128 -> 2
    macs = 50 * 50 * 9 * (3 * 16 + 16 * 16) + 16 * 25 * 25 * 128 + 128 * 2
    assert load_model_map()["noscope_coral"]["og_ops"] == 2 * macs
    # fold 4 (m = 2): one input holds 4 images, 12 channels in, 8 logits out
    macs4 = 50 * 50 * 9 * (12 * 32 + 32 * 32) + 32 * 25 * 25 * 256 + 256 * 8
    assert load_model_map()["noscope_coral"]["fold4_ops"] == 2 * macs4


def test_folded_flops_per_image_stay_within_15_percent(flop_count_output):
    for task in all_tasks().values():
        counts = flop_count_output[task.model_map_key]
        for f in (2, 3, 4):
            ratio = counts[f"fold{f}_ops"] / f / counts["og_ops"]
            assert 0.85 <= ratio <= 1.15, (task.name, f, ratio)


def test_compound_scaling_shrinks_flops(flop_count_output):
    for task in all_tasks().values():
        if task.compound_scaling_baseline:
            base = flop_count_output[task.efficientnet_key]
            assert base["og_ops"] == flop_count_output[task.name]["og_ops"]  # phi = 1 is the original
            assert base["fold2_ops"] < 0.7 * base["og_ops"]


@pytest.mark.slow
def test_flop_count_write_goes_to_the_given_path(tmp_path):
    out = tmp_path / "map.json"
    done = run_cli("./flop_count.sh", "--write", out)
    assert done.returncode == 0 and json.loads(out.read_text()) == load_model_map()
    bad = run_cli("./flop_count.sh", "--write", tmp_path / "missing" / "map.json")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: cannot write")


def parse_ai(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ai.HEADER
    return rows[1:]


def test_ai_prints_twelve_rows_that_rise_with_fold():
    done = run_cli(sys.executable, "ai.py")
    assert done.returncode == 0, done.stderr
    rows = parse_ai(done.stdout)
    assert len(rows) == 12
    names = [r[0] for r in rows]
    assert names[:4] == [f"game-{t}" for t in sorted(["lol/goldnumber-fraction", "apex/squad_count_v2",
                                                      "sot/coin_count-digits_3_4-v2", "sot/timer3"])]
    assert set(names[4:8]) == {"noscope-coral", "noscope-night", "noscope-taipei", "noscope-roundabout"}
    for name, batch, *values in rows:
        assert batch == "1024"
        if name.startswith("efficientnet-"):
            assert values[2:] == ["", ""] and float(values[1]) < float(values[0])
        else:
            ais = [float(v) for v in values]
            assert ais == sorted(ais) and ais[3] > 1.5 * ais[0], (name, ais)


def test_ai_matches_the_definition_by_hand():
    # noscope-coral at f=1, batch 1024, 2 bytes: ops and elements summed over its 4 layers
    layers = [  # (MACs, outputs, params, input elements, output elements) per image
        (50 * 50 * 9 * 3 * 16, 16 * 2500, 9 * 3 * 16 + 16, 3 * 2500, 16 * 2500),
        (50 * 50 * 9 * 16 * 16, 16 * 2500, 9 * 16 * 16 + 16, 16 * 2500, 16 * 2500),
        (10000 * 128, 128, 10000 * 128 + 128, 10000, 128),
        (128 * 2, 2, 128 * 2 + 2, 128, 2),
    ]
    ops = sum(1024 * (2 * macs + outs) for macs, outs, _, _, _ in layers)
    elements = sum(params + 1024 * (i + o) for _, _, params, i, o in layers)
    assert arithmetic_intensity("noscope-coral", 1, "folded", 1024, 2) == pytest.approx(ops / (2 * elements))
    assert arithmetic_intensity("noscope-coral", 1, "folded", 1024, 4) == pytest.approx(ops / (4 * elements))


def test_ai_options():
    fp32 = parse_ai(run_cli(sys.executable, "ai.py", "--bytes_per_elt", "4", "--batch_size", "256").stdout)
    fp16 = parse_ai(run_cli(sys.executable, "ai.py", "--batch_size", "256").stdout)
    assert fp32[0][1] == "256"
    assert float(fp32[0][2]) == pytest.approx(float(fp16[0][2]) / 2, rel=1e-3)
    published = parse_ai(run_cli(sys.executable, "ai.py", "--match_published").stdout)
    assert float(published[-1][3]) < float(parse_ai(run_cli(sys.executable, "ai.py").stdout)[-1][3])
    bad = run_cli(sys.executable, "ai.py", "--batch_size", "2")
    assert bad.returncode == 2 and "argument --batch_size: must be at least 4" in bad.stderr


def test_flops_from_throughput():
    counts = load_model_map()
    assert flops_per_image("noscope-coral", "original") == counts["noscope_coral"]["og_ops"]
    assert flops_per_image("noscope-coral", "folded", 4) == counts["noscope_coral"]["fold4_ops"] / 4
    assert flops_per_image("sot/timer3", "efficientnet", 2) == counts["efficientnet-game_sot/timer3"]["fold2_ops"]
    with pytest.raises(ValueError, match="has no model 'efficientnet-game_cifar10'"):
        flops_per_image("cifar10", "efficientnet", 2)
    # any fold works everywhere (one rule for train.py, infer.py, the sweep): folds the map lacks are counted here
    assert flops_per_image("sot/timer3", "efficientnet", 3) == count_flops("sot/timer3", 3, "efficientnet")
    assert flops_per_image("noscope-coral", "folded", 9) == count_flops("noscope-coral", 9) / 9
    with pytest.raises(ValueError, match="fold must be a positive integer"):
        flops_per_image("noscope-coral", "folded", 0)
    with pytest.raises(ValueError, match="unknown task"):
        flops_per_image("resnet50")


def test_flops_from_throughput_cli():
    done = run_cli(sys.executable, "util/flops_from_tput.py", "noscope-coral", "1000", "--fold", "4")
    assert done.returncode == 0
    value, unit = done.stdout.split()[:2]
    assert unit == "FLOPs/sec" and "per image" in done.stdout
    assert float(value) == pytest.approx(1000 * load_model_map()["noscope_coral"]["fold4_ops"] / 4, rel=1e-5)
    bad = run_cli(sys.executable, "util/flops_from_tput.py", "sot/timer3", "10", "--fold", "0")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: fold must be a positive integer")


def test_model_map_path_is_the_committed_copy():
    assert MODEL_MAP == REPO / "config" / "model_map.json" and MODEL_MAP.exists()


def test_the_counter_counts_what_thop_counts():
    """models/flops.py follows the rules of thop, the paper's counter, layer kind by layer kind."""
    thop = pytest.importorskip("thop")
    for task in all_tasks().values():
        for fold, mode in [(1, "original"), (2, "folded"), (4, "folded")] + (
                [(2, "efficientnet")] if task.compound_scaling_baseline else []):
            model, shape = build_model(task, fold, mode)
            with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
                macs, _ = thop.profile(model.eval(), inputs=(torch.zeros(1, *shape),), verbose=False)
            assert count_model_flops(model, shape) == int(round(2 * macs)), (task.name, fold, mode)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=4), torch.nn.BatchNorm2d(8), torch.nn.AvgPool2d(2),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        macs, _ = thop.profile(model.eval(), inputs=(torch.zeros(1, 4, 10, 10),), verbose=False)
    assert count_model_flops(model, (4, 10, 10)) == int(round(2 * macs))


def test_infer_measures_a_fold_the_map_lacks_as_train_trains_it():
    done = run_cli(sys.executable, "infer.py", "noscope-coral", "--fold", "9", "--batch_size", "18", "--min_time", "0",
                   "--warmup", "0", "--backend", "eager", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    fields = dict(item.split("=", 1) for item in done.stdout.split())
    assert fields["fold"] == "9" and float(fields["flops_per_sec"]) == pytest.approx(
        float(fields["images_per_sec"]) * count_flops("noscope-coral", 9) / 9, rel=1e-4)
