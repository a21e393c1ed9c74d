"""docs/examples/: the Python that results/ was made with runs as its files say (feature_distill.py: test_recipe.py)."""
import importlib.util
import pickle
import sys

import torch

from helpers import REPO, run_cli
from models import fold_cnn
from models.user import load_model_file

EXAMPLES = REPO / "docs" / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_users_digit_cnn_folds():
    original = load_model_file(f"{EXAMPLES / 'my_models.py'}:build")
    folded = fold_cnn(original, fold=4, example_input=torch.rand(2, 1, 8, 8))
    assert original(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert folded(torch.rand(8, 1, 8, 8)).shape == (8, 10)  # 8 images run as 2 folded inputs of 4


def test_the_torchvision_models_have_ten_classes():
    models = example("torchvision_models")
    for build in (models.resnet18, models.mobilenet_v3_small):
        assert build().eval()(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_make_digits_writes_an_image_folder_or_says_what_it_needs(tmp_path):
    done = run_cli(sys.executable, EXAMPLES / "make_digits.py", tmp_path / "digits")
    if importlib.util.find_spec("sklearn") is None:
        assert done.returncode == 2 and done.stderr.strip() == ("error: this example needs scikit-learn: pip install "
                                                                 "scikit-learn")
        return
    assert done.returncode == 0, done.stderr
    counts = {split: len(list((tmp_path / "digits" / split).rglob("*.png"))) for split in ("train", "val", "test")}
    assert sum(counts.values()) == 1797 and sorted(p.name for p in (tmp_path / "digits" / "train").iterdir()) == \
        [str(d) for d in range(10)]


def test_the_cifar_standin_is_in_torchvisions_format(tmp_path):
    md5 = example("cifar_standin").write_cifar100(tmp_path, n_train=40, n_test=10)
    train = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes())
    assert train["data"].shape == (40, 3072) and all(0 <= label < 100 for label in train["fine_labels"])
    assert sorted(md5) == ["meta", "test", "train"]
