"""Check a served SignatureDef against what tiledseg sends and the model's metadata expects."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tiledseg.serving.errors import SignatureMismatchError

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "check_signature"]

# The names model_zoo's export gives the signature's input and output (model_zoo.layout).
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
_FLOAT_TYPES = (
    tf.float32.as_datatype_enum,
    tf.float16.as_datatype_enum,
    tf.bfloat16.as_datatype_enum,
)


def check_signature(
    signature_defs: Any, name: str, *, input_channels: int, classes: int, where: str
) -> tuple[str, str]:
    """Find the input and output to use in a signature and check their dtype and shape.

    A signature with a single input (output) is used whatever its name, so plain
    ``keras.Model.export`` SavedModels work too; with several, the zoo export's names are needed.

    Args:
        signature_defs: the ``signature_def`` map of a ``GetModelMetadataResponse``.
        name: str, the signature to call.
        input_channels: int, the channels the metadata says the model takes.
        classes: int, the output channels the metadata lists.
        where: str, the model and server, for messages.

    Returns:
        ``(input_alias, output_alias)``.

    Raises:
        SignatureMismatchError: no such signature, ambiguous tensors, a non-float dtype, a rank
            other than 4, or channel counts different from the metadata's (expected vs got).
    """
    public = sorted(key for key in signature_defs if not key.startswith("__"))
    if name not in signature_defs:
        raise SignatureMismatchError(
            f"{where} has no signature {name!r}; it has {public}. Pick one with "
            "?signature=NAME in the serving URL."
        )
    signature = signature_defs[name]
    input_name = _pick(signature.inputs, INPUT_NAME, "input", name, where)
    output_name = _pick(signature.outputs, OUTPUT_NAME, "output", name, where)
    _check_tensor(signature.inputs[input_name], input_channels, f"input {input_name!r}", where)
    _check_tensor(signature.outputs[output_name], classes, f"output {output_name!r}", where)
    return input_name, output_name


def _pick(tensors, preferred: str, kind: str, signature: str, where: str) -> str:
    names = sorted(tensors)
    if len(names) == 1:
        return names[0]
    if preferred in tensors:
        return preferred
    raise SignatureMismatchError(
        f"{where}: signature {signature!r} has {kind}s {names}; tiledseg needs a single {kind} "
        f"or one named {preferred!r}. Export the model with `python -m model_zoo export`."
    )


def _check_tensor(info, channels: int, what: str, where: str) -> None:
    dtype = tf.dtypes.as_dtype(info.dtype).name if info.dtype else "unknown"
    if info.dtype not in _FLOAT_TYPES:
        raise SignatureMismatchError(
            f"{where}: {what} is {dtype}; tiledseg sends and reads float32 pixels/probabilities."
        )
    if info.tensor_shape.unknown_rank:
        return
    dims = [int(d.size) for d in info.tensor_shape.dim]
    if len(dims) != 4:
        raise SignatureMismatchError(
            f"{where}: {what} has shape {dims}; expected [batch, height, width, channels]."
        )
    if dims[-1] not in (-1, channels):
        raise SignatureMismatchError(
            f"{where}: {what} has {dims[-1]} channel(s) (shape {dims}); the model's metadata "
            f"says {channels}. Is --meta the metadata of the served model?"
        )
