"""Fixtures shared by the test modules."""
import pytest
from torchvision.datasets import CIFAR10

from helpers import write_tiny_cifar10


@pytest.fixture
def tiny_cifar10(tmp_path, monkeypatch):
    """data_dir holding a tiny CIFAR-10; torchvision's checksums are pointed at the tiny files."""
    md5 = write_tiny_cifar10(tmp_path / "data" / "cifar10")
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    return tmp_path / "data"
