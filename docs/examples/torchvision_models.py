"""torchvision CNNs for the --model_file measurements in this folder (10 classes, freshly initialised)."""
import torchvision


def resnet18():
    return torchvision.models.resnet18(num_classes=10)


def mobilenet_v3_small():
    return torchvision.models.mobilenet_v3_small(num_classes=10)
