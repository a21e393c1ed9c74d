"""Static int8 quantization of an exported model with ONNX Runtime, calibrated on a sample of its inputs.

Format QDQ (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels). Weights: int8,
symmetric, one scale per output channel (per-channel) for Conv and Gemm/MatMul, in 8 bits where the CPU has int8 dot
products and in 7 where it does not (`weight_bits`). Activations: uint8, one scale and zero point per tensor, their
ranges those of the calibration sample: by default its 99.999th percentile of absolute values (`percentile`; one
outlier in the sample no longer widens a range and coarsens every other value), or its minimum and maximum
(`minmax`, the default before 2026-12-07): results/amd-epyc-zen4/int8/accuracy.md measured both. Every operator
ONNX Runtime can quantize is (Conv, Gemm, MatMul, and between them Relu, MaxPool, Add, Reshape ...); the rest stay
fp32. `quantized_ops` says which ran in int8.

ONNX Runtime runs the int8 kernels with VNNI dot products where the CPU has them (AVX-512 VNNI, AVX-VNNI, AMX) and
with plain AVX2 where it does not: the model runs everywhere, fast only with them (`int8_instructions`).
"""
import collections
import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from util.core.device import cpu_flags

CALIBRATION_BATCH = 32  # inputs per calibration batch
CALIBRATION_METHODS = ("percentile", "minmax")  # how activation ranges are read off the calibration sample
INT8_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni")  # /proc/cpuinfo's names of x86 int8 dot products


def int8_dot_products():
    """The x86 int8 dot-product instructions this CPU has (VNNI in AVX-512 or AVX, AMX): /proc/cpuinfo's names."""
    return [name for name in INT8_FEATURES if name in cpu_flags()]


def int8_instructions():
    """The int8 dot-product instructions this CPU has, or "none (no VNNI: slower int8 kernels)"."""
    return " ".join(int8_dot_products()) or "none (no VNNI: slower int8 kernels)"


def weight_bits(bits=None):
    """The weights' bits: `bits` if given (7 or 8), else 8 where this CPU has int8 dot products and 7 where it does not.

    Without VNNI, ONNX Runtime multiplies uint8 activations by int8 weights with AVX2's vpmaddubsw, which adds pairs of
    products in int16: 255 x 127 x 2 overflows it and saturates, 255 x 64 x 2 (7-bit weights, -64..64) does not.
    Measured on a 2-core AMD EPYC without VNNI (results/accuracy/int8.md): noscope-taipei f=1 lost 5.6 points of test
    top-1 with 8-bit weights and 0.4 with 7-bit ones.
    """
    if bits is not None:
        return bits
    return 8 if int8_dot_products() else 7


def check_calibration(inputs, batch=CALIBRATION_BATCH, what=None):
    """A ValueError naming the fix unless `inputs` (an array of model inputs; `what` says where they came from) holds
    at least one batch."""
    count = 0 if inputs is None else len(inputs)
    if count < batch:
        raise ValueError(f"int8 calibration needs at least {batch} model inputs (one batch) and got {count} "
                         + (f"({what})" if what else "(pass a larger calibration sample)"))


def quantize(onnx_bytes, inputs, batch=CALIBRATION_BATCH, bits=None, method="percentile"):
    """`onnx_bytes` (an fp32 model with input `x`) quantized to int8 as the module docstring says, calibrated on
    `inputs` (a float32 array of model inputs, fed `batch` at a time) with `method` (CALIBRATION_METHODS), its weights
    in `bits` bits (weight_bits); returns the int8 model's bytes."""
    import logging

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of: {', '.join(CALIBRATION_METHODS)}")

    check_calibration(inputs, batch)
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(inputs) - batch + 1, batch))

        def get_next(self):
            start = next(self.batches, None)
            return None if start is None else {"x": inputs[start:start + batch]}

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(onnx_bytes)
        logging.disable(logging.WARNING)  # quiet its advice to pre-process the graph first, which these graphs do not need
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # and the percentile calibrator's progress lines
                quantize_static(source, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                reduce_range=weight_bits(bits) == 7,
                                calibrate_method=CalibrationMethod.Percentile if method == "percentile" else
                                CalibrationMethod.MinMax, extra_options={"CalibPercentile": 99.999})
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


def quantized_ops(int8_bytes):
    """{operator type: count} of the operators that read a dequantized (int8) tensor, e.g. {"Conv": 4, "Gemm": 1}."""
    import onnx
    graph = onnx.load_from_string(int8_bytes).graph
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    counts = collections.Counter(node.op_type for node in graph.node
                                 if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
                                 and any(name in dequantized for name in node.input))
    return dict(sorted(counts.items()))
