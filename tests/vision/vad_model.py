"""A tiny ONNX model shaped like Silero VAD, so the real multi-speaker filter runs offline.

Vision Agents' ``FirstSpeakerWinsFilter`` loads ``silero_vad.onnx`` from its
``model_dir`` during warm-up (downloading it when absent). The tests write this
model there instead: the same inputs (``input`` [1, 576] float, ``state``
[2, 1, 128] float, ``sr`` int64) and outputs (a [1, 1] speech score, the next
state), scoring a chunk by its loudest sample. Loud audio is "speech" (score
near 1), silence is not (score 0). The bytes are written with a few lines of
protobuf encoding (no ``onnx`` package needed); onnxruntime checks them on load.
"""

from __future__ import annotations

from pathlib import Path

FLOAT = 1
INT64 = 7
ATTRIBUTE_INTS = 7
ATTRIBUTE_INT = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor_info(name: str, elem_type: int, dims: tuple[int, ...]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, dim)) for dim in dims)  # TensorShapeProto.dim
    tensor = _int(1, elem_type) + _bytes(2, shape)  # TypeProto.Tensor
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor))  # ValueInfoProto


def _node(op_type: str, inputs: list[str], outputs: list[str], *attributes: bytes) -> bytes:
    body = b"".join(_bytes(1, name) for name in inputs)
    body += b"".join(_bytes(2, name) for name in outputs)
    body += _bytes(4, op_type)
    body += b"".join(_bytes(5, attribute) for attribute in attributes)
    return body


def silero_shaped_model() -> bytes:
    """The model's bytes (ONNX IR 7, opset 13)."""
    axes = _bytes(1, "axes") + _int(8, 1) + _int(20, ATTRIBUTE_INTS)
    keepdims = _bytes(1, "keepdims") + _int(3, 1) + _int(20, ATTRIBUTE_INT)
    graph = b"".join(
        [
            _bytes(1, _node("Abs", ["input"], ["magnitude"])),
            _bytes(1, _node("ReduceMax", ["magnitude"], ["output"], axes, keepdims)),
            _bytes(1, _node("Identity", ["state"], ["stateN"])),
            _bytes(2, "silero_shaped"),
            _bytes(11, _tensor_info("input", FLOAT, (1, 576))),
            _bytes(11, _tensor_info("state", FLOAT, (2, 1, 128))),
            _bytes(11, _tensor_info("sr", INT64, ())),
            _bytes(12, _tensor_info("output", FLOAT, (1, 1))),
            _bytes(12, _tensor_info("stateN", FLOAT, (2, 1, 128))),
        ]
    )
    opset = _bytes(1, "") + _int(2, 13)
    return _int(1, 7) + _bytes(2, "agentplane-tests") + _bytes(7, graph) + _bytes(8, opset)


def write_model(model_dir: Path) -> Path:
    """Write ``silero_vad.onnx`` into ``model_dir`` (where the filter looks first)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "silero_vad.onnx"
    path.write_bytes(silero_shaped_model())
    return path
