"""The paper's weight initialisation, shared by every model."""
from torch import nn


def init_weights(module):
    """Conv: Xavier-uniform with the ReLU gain; linear: N(0, 0.01); biases 0; BatchNorm 1 and 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.01)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and module.bias is not None:
        nn.init.zeros_(module.bias)
