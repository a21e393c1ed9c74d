"""The runtime layer: how a model runs on a backend, precision and device (backends.py), its ONNX export and
sessions (onnx.py) and int8 quantization (int8.py). Measurement (util/measure/), export (util/deploy/) and serving
code all use it; it times nothing."""
