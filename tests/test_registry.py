"""The task registry in config/: the one list of tasks every script uses."""
import pytest

from config.tasks import all_tasks, get_task, task_names


def test_the_twelve_paper_tasks_are_registered():
    assert len(task_names()) == 12
    assert len(task_names("game")) == 6 and len(task_names("noscope")) == 4 and task_names("cifar") == ["cifar10", "cifar100"]
    assert {"lol/goldnumber-fraction", "sot/timer3", "noscope-coral", "noscope-roundabout"} <= set(task_names())


def test_task_settings_come_from_model_description_json():
    gold = get_task("lol/goldnumber-int")
    assert gold.input_shape == (3, 22, 52) and gold.num_classes == 111 and gold.class_names[-1] == "other"
    assert gold.architecture == {"template": "1_3s_1_convnet", "conv_units": 1, "first_channels": 32,
                                 "unit_channels": 32, "last_channels": 8}
    taipei = get_task("noscope-taipei")
    assert taipei.num_classes == 2 and taipei.labels["positive_object"] == "bus"
    assert taipei.labels["split_fraction"] == 0.0625 and taipei.model_map_key == "noscope_taipei"
    assert get_task("cifar100").num_classes == 100
    assert sorted(t.name for t in all_tasks().values() if t.compound_scaling_baseline) == [
        "apex/squad_count_v2", "lol/goldnumber-fraction", "sot/coin_count-digits_3_4-v2", "sot/timer3"]


def test_unknown_task_lists_the_choices():
    with pytest.raises(ValueError, match=r"^unknown task 'cifar1000'; choose one of: apex/squad_count_v2, .*cifar100$"):
        get_task("cifar1000")
