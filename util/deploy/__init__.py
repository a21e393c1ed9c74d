"""Deploying a trained model: ONNX export checked against PyTorch (onnx), classifying a video (video)."""
