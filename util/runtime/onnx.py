"""ONNX: export a PyTorch model, and run the exported model with ONNX Runtime or OpenVINO.

Both runtimes take the same bytes: the fp32 export, or its int8 model (util/runtime/int8.py, QDQ). OpenVINO runs on the
CPU only here, in fp32 (its CPU plugin would otherwise compute in bf16 where the CPU has bf16 instructions) and in
int8 (it turns the QDQ pairs into its own int8 kernels).
"""
import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import torch

from util.runtime.int8 import CALIBRATION_BATCH, quantize


def onnx_model(model, example, batch_multiple=1):
    """`model` exported to ONNX (bytes) with a dynamic batch dimension, input `x`, output `logits`.

    The batch dimension is named `batch`; with `batch_multiple` m > 1 it is declared as m x `groups`
    (for a model that only takes batches that are multiples of m, such as a FoldedClassifier).
    """
    batch = torch.export.Dim("batch") if batch_multiple == 1 else batch_multiple * torch.export.Dim("groups")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["x"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto.SerializeToString()


def ort_session(onnx_bytes, device=torch.device("cpu")):
    """An ONNX Runtime session for `onnx_bytes` on `device`, with as many threads as PyTorch uses, quiet."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    if device.type == "cuda":
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=providers)


def measured_onnx(model, example, int8=False, seed=0):
    """`model` exported to ONNX for a throughput measurement; `int8`: quantized, calibrated on random inputs drawn as
    the measured ones are (standard normal, seeded, shaped like `example`'s): random weights need no images. The same
    model and seed give the same bytes, so every ONNX backend runs the same model."""
    onnx_bytes = onnx_model(model, example[:2])
    if int8:
        generator = torch.Generator().manual_seed(seed)
        calibration = torch.randn(4 * CALIBRATION_BATCH, *example.shape[1:], generator=generator).numpy()
        onnx_bytes = quantize(onnx_bytes, calibration)
    return onnx_bytes


def cpu_runner(onnx_bytes, runtime="onnxruntime"):
    """A function from a CPU tensor of model inputs to their logits (a CPU tensor), running `onnx_bytes` with
    `runtime`: "onnxruntime" or "openvino"."""
    if runtime == "openvino":
        request = openvino_model(onnx_bytes).create_infer_request()

        def run(x):
            request.infer({0: x.contiguous().numpy()})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())  # the request reuses its output buffer
        return run
    session = ort_session(onnx_bytes)
    return lambda x: torch.from_numpy(session.run(None, {"x": x.contiguous().numpy()})[0])


def onnxruntime_runner(model, example, device, int8=False):
    """ONNX Runtime running `model` (measured_onnx) on `device`: on CUDA the data stays on the GPU."""
    onnx_bytes = measured_onnx(model, example, int8)
    if device.type == "cpu":
        return cpu_runner(onnx_bytes)
    session = ort_session(onnx_bytes, device)

    def run(x):  # keep the data on the GPU: bind the torch tensors' memory
        x = x.contiguous()
        out = torch.empty((x.shape[0], *model_output_shape), dtype=x.dtype, device=x.device)
        binding = session.io_binding()
        binding.bind_input("x", "cuda", device.index or 0, _np_dtype(x.dtype), tuple(x.shape), x.data_ptr())
        binding.bind_output("logits", "cuda", device.index or 0, _np_dtype(x.dtype), tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)
        return out
    with torch.no_grad():
        model_output_shape = tuple(model(example[:1]).shape[1:])
    return run


def _np_dtype(dtype):
    import numpy as np
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]


def openvino_model(onnx_bytes):
    """`onnx_bytes` compiled by OpenVINO for the CPU: fp32 arithmetic outside the int8 kernels, one stream, as many
    threads as PyTorch uses."""
    import openvino
    core = openvino.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes)
        network = core.read_model(str(path))
    return core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                               "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})


def openvino_runner(model, example, int8=False):
    """OpenVINO running `model` (measured_onnx) on the CPU."""
    return cpu_runner(measured_onnx(model, example, int8), "openvino")
