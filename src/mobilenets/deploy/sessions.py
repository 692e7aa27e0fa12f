"""Inference runtimes as sessions: the fastest correct PyTorch eager path, ONNX Runtime, OpenVINO (on
our ``.onnx``), LiteRT (TFLite with XNNPACK, on our ``.tflite`` exports or Google's files) and
ExecuTorch (our ``.pte``).

Every session takes float32 batches already preprocessed and returns a classifier's logits, or a
detector's four outputs (boxes, scores, labels, count: :class:`DetectionPipeline`), so ``predict``
and ``bench`` can run any of our weights or exported files through any runtime
(:func:`mobilenets.deploy.runtime_choice.open_session` picks and opens one). Batches are NCHW unless the
caller says otherwise: ``session.layout`` is the layout the runtime takes without a copy (a TFLite
graph and channels-last torch take NHWC), and ``run(x, layout=session.layout)`` hands it over as it
is. ``session.bind(x)`` puts ``x`` into the array the runtime itself reads (LiteRT's input tensor, in the
graph's dtype: quantized for an integer input) and returns it; ``run`` on that array, or on it refilled in
place, goes straight to the runtime's call, with no copy or conversion. ``session.raw(x)`` is the
runtime's own call on ``x``, the baseline a session's cost is measured against
(``benchmarks/runtime_overhead.py``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..models import fold_batchnorm
from ..tasks import TaskConfig, config_from_dict, config_of, kind_of, task_of, weights_meta_of
from ..utils.device import cpu_threads, pick_device
from ..utils.quiet import quiet_native_output
from ..weights import load_model
from ..weights.tflite_file import tflite_metadata
from .artifact import META_KEY, check_input, float_tolerance, outputs_difference

Outputs = np.ndarray | tuple[np.ndarray, ...]
Array = np.ndarray | torch.Tensor
LAYOUTS = ("NCHW", "NHWC")
PTE_META_METHOD = "mobilenets_metadata"  # a .pte's constant method returning our JSON record as UTF-8 bytes


class Session(Protocol):
    """What every runtime's session offers (``predict``, ``bench`` and ``eval --runtime`` use nothing
    else): its runtime's name, the layout it takes without a copy, our metadata and the model's config
    when its file records them, ``run``, ``bind`` (the runtime's own input array, which ``run`` takes
    as it is) and the runtime's own call, ``raw``."""

    name: str
    layout: str
    meta: dict[str, Any]
    config: TaskConfig | None

    def run(self, x: Array, layout: str = "NCHW") -> Outputs: ...

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray: ...

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]: ...


def finish(config: TaskConfig | None, outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> Outputs:
    """What a session returns from an exported graph's outputs: a detector's NMS on its boxes and scores
    (our TFLite and ExecuTorch exports end before it)."""
    return finisher(config)(outputs)


def finisher(config: TaskConfig | None) -> Callable[[torch.Tensor | tuple[torch.Tensor, ...]], Outputs]:
    """:func:`finish` for one config, its kind looked up once (a session calls it on every batch)."""
    step = None if config is None else kind_of(config).finish

    def done(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> Outputs:
        if step is not None:
            outputs = step(config, outputs)
        return outputs.numpy() if isinstance(outputs, torch.Tensor) else tuple(o.numpy() for o in outputs)
    return done


def to_layout(x: Array, layout: str, want: str) -> Array:
    """``x`` (a batch in ``layout``) in the layout ``want``: the same array when they agree, else a
    transposed view (its consumer makes the one copy)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout == want:
        return x
    order = (0, 2, 3, 1) if want == "NHWC" else (0, 3, 1, 2)
    return x.permute(*order) if isinstance(x, torch.Tensor) else x.transpose(order)


def copy_channels_last(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` (cast as needed) into a C-contiguous NHWC ``dst``; an NCHW batch seen as NHWC
    (a transposed view) is copied one channel plane at a time, 4-5x faster than numpy's strided copy."""
    if src.flags.c_contiguous:
        np.copyto(dst, src, casting="unsafe")
    else:
        for c in range(dst.shape[-1]):
            np.copyto(dst[..., c], src[..., c], casting="unsafe")


def numpy(x: Array) -> np.ndarray:
    """A CPU tensor's array without a copy (sessions take either)."""
    return x.numpy() if isinstance(x, torch.Tensor) else x


def check_float_export(model: torch.nn.Module, module: torch.nn.Module, size: int,
                       run: Callable[[np.ndarray], Outputs]) -> tuple[float, float]:
    """A float file that ends before the NMS (TFLite, ExecuTorch), run by ``run``, against the PyTorch
    ``module`` on a seeded batch: the max abs difference and its tolerance (:func:`float_tolerance`)."""
    x = check_input(model, size, batch=2)
    with torch.inference_mode():
        ref = finish(config_of(model), module(x))
    return outputs_difference(ref, run(x.numpy())), float_tolerance(ref)


class TorchSession:
    """Eval mode, BatchNorm folded, channels-last, ``inference_mode``, all cores. An NHWC batch is a
    channels-last tensor as it is (a view, no copy)."""

    name = "torch"
    layout = "NHWC"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        torch.set_num_threads(threads or cpu_threads())
        self.device = pick_device(device)
        self.source = model
        self.model = fold_batchnorm(model).to(self.device).to(memory_format=torch.channels_last).eval()
        self.meta = weights_meta_of(model)
        self.config: TaskConfig | None = config_of(model)
        self._pipelines: dict[tuple[int, int], torch.nn.Module] = {}  # per input size (an SSD's anchors)
        self._bound: tuple[np.ndarray, torch.Tensor] | None = None

    def _input(self, x: Array, layout: str) -> torch.Tensor:
        t = torch.as_tensor(to_layout(x, layout, "NHWC")).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        return t.to(self.device).contiguous(memory_format=torch.channels_last)

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray:
        arr = np.ascontiguousarray(numpy(to_layout(x, layout, "NHWC")), dtype=np.float32)
        t = self._input(arr, "NHWC")
        self._bound = (arr, t) if t.device.type == "cpu" else None  # a device copy would go stale when refilled
        return arr

    def _forward(self, t: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        size = (int(t.shape[-2]), int(t.shape[-1]))
        if size not in self._pipelines:
            self._pipelines[size] = kind_of(self.model).pipeline(self.model, size)[0].to(self.device)
        return self._pipelines[size](t)

    @torch.inference_mode()
    def run(self, x: Array, layout: str = "NCHW") -> Outputs:
        bound = self._bound
        out = self._forward(bound[1] if bound is not None and x is bound[0] else self._input(x, layout))
        if isinstance(out, torch.Tensor):
            return out.float().cpu().numpy()
        return tuple(o.cpu().numpy() for o in out)

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]:
        t = self._input(x, layout)

        def call() -> object:
            with torch.inference_mode():
                return self._forward(t)
        return call


class OnnxSession:
    """ONNX Runtime with all graph optimizations; CUDA when available, else CPU."""

    name = "onnxruntime"
    layout = "NCHW"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise ValueError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self.input = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.static_batch = batch if isinstance(batch, int) else None
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta: dict[str, Any] = json.loads(props[META_KEY]) if META_KEY in props else {}
        self.path = Path(path)
        self.config: TaskConfig | None = config_from_dict(self.meta["config"]) if "config" in self.meta else None
        self._feed: dict[str, np.ndarray] = {}

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray:
        arr = np.ascontiguousarray(numpy(to_layout(x, layout, "NCHW")), dtype=np.float32)
        self._feed = {self.input: arr}  # ONNX Runtime reads a C-contiguous float32 array in place
        return arr

    def run(self, x: Array, layout: str = "NCHW") -> Outputs:
        if x is not self._feed.get(self.input):
            self.bind(x, layout)
        arr = self._feed[self.input]
        if self.static_batch == 1 and len(arr) > 1:  # a graph traced for one image (Faster R-CNN)
            parts = [self.session.run(None, {self.input: arr[i: i + 1]}) for i in range(len(arr))]
            outs = [np.concatenate(p) for p in zip(*parts)]
        else:
            outs = self.session.run(None, self._feed)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]:
        feed = {self.input: self.bind(x, layout)}
        return lambda: self.session.run(None, feed)


class BoundArrayHeldError(RuntimeError):
    """A LiteRT session cannot resize its input tensor while a caller holds the array ``bind`` returned
    (that array is the tensor's memory)."""


class LitertSession:
    """LiteRT (XNNPACK on the CPU) on a ``.tflite``: float batches in (NHWC, the graph's layout, as they
    are; NCHW transposed on the way in), our outputs out.

    An integer input is quantized with the file's scale and zero point; outputs are dequantized.
    Tensor details are read once. A batch other than the file's is run by resizing the input (one
    image at a time if the graph cannot be resized). Our files carry their config in their
    metadata; a detector's NMS runs after the graph (:func:`select_for`). Google's files are read by
    our loader for their config, classes and preprocessing; their SSD post-processing op's outputs
    are turned into ours (``x1, y1, x2, y2``, labels from 1).
    """

    name = "litert"
    layout = "NHWC"

    def __init__(self, source: str | Path | bytes, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        kind = "model_content" if isinstance(source, bytes) else "model_path"
        try:
            with quiet_native_output():  # the XNNPACK delegate's banner
                self.interpreter = Interpreter(**{kind: source if isinstance(source, bytes) else str(source)},
                                               num_threads=threads or cpu_threads())
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{'model' if isinstance(source, bytes) else source}: not a loadable TFLite model "
                             f"({str(e).splitlines()[0]})") from None
        self.meta: dict[str, Any] = tflite_metadata(source)
        self.ours = bool(self.meta)
        if self.ours:
            self.config: TaskConfig | None = config_from_dict(self.meta["config"])
        else:  # Google's file: our loader knows its architecture, classes and preprocessing
            model = load_model(source) if not isinstance(source, bytes) else None
            self.config = None if model is None else config_of(model)
            self.meta = {} if model is None else {**model.weights_meta, "model": config_of(model).name,
                                                  "task": task_of(config_of(model))}
        inp = self.interpreter.get_input_details()[0]
        self._index, self._dtype = int(inp["index"]), np.dtype(inp["dtype"])
        self._in_quant = inp["quantization"] if self._dtype.kind in "iu" else None
        self._buffer: np.ndarray | None = None
        self._one_at_a_time = False  # set when the graph cannot take a batch (static shapes)
        self._finish = finisher(self.config)
        # Google's classifiers end in a softmax: their log-probabilities are logits (softmax gives them back)
        outputs = self.interpreter.get_output_details()
        ops = self.interpreter._get_ops_details()
        log = any(op["op_name"] == "SOFTMAX" and outputs[0]["index"] in op["outputs"] for op in ops)
        self._outputs = [(int(o["index"]), _output_reader(np.dtype(o["dtype"]), float(o["quantization"][0]),
                                                          int(o["quantization"][1]), log=log and i == 0))
                         for i, o in enumerate(outputs)]

    def _input_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """The interpreter's input tensor as an array, resized to ``shape`` first if it differs. The
        session holds this view for good and invokes the native interpreter, whose Python wrapper refuses
        to run while any view is alive; only a resize reallocates the tensor, and the wrapper's
        ``allocate_tensors`` still refuses while a caller holds an old view."""
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = None
            if not self.interpreter._safe_to_run():
                raise BoundArrayHeldError(f"an array from bind() is still held, and a batch of shape {shape} needs "
                                          "a new input tensor: drop the old array first")
            self.interpreter.resize_tensor_input(self._index, list(shape))
            self.interpreter.allocate_tensors()  # a half-done resize leaves no buffer: the next call resizes again
            self._buffer = self.interpreter.tensor(self._index)()
        return self._buffer

    def _invoke(self) -> None:
        """The native Invoke: interpreter.invoke() without its check for live views (the session holds
        one of its input tensor). Not kept as a bound method: that would hold the native interpreter,
        and the wrapper counts its references to tell whether views are alive."""
        self.interpreter._interpreter.Invoke()

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray:
        """``x`` written into the interpreter's input tensor, in one pass that casts, transposes and
        quantizes (a float batch for an integer input goes onto the input's grid); returns that tensor."""
        arr = numpy(to_layout(x, layout, "NHWC"))
        if arr is self._buffer or (self._one_at_a_time and len(arr) > 1):
            return arr
        try:
            buf = self._input_buffer(tuple(arr.shape))
        except BoundArrayHeldError:
            raise
        except (ValueError, RuntimeError):  # a graph with static shapes (a detector's) takes no batch
            if len(arr) == 1:
                raise
            self._one_at_a_time = True
            return arr  # run() takes its images one at a time
        if self._in_quant is not None and arr.dtype.kind == "f":  # no torch ops here: its idle threads spin
            scale, zero_point = self._in_quant
            info = np.iinfo(self._dtype)
            q = np.empty(arr.shape, np.float32)
            copy_channels_last(q, arr)
            q *= np.float32(1 / scale)
            q += np.float32(zero_point)
            np.rint(q, out=q)
            arr = np.clip(q, info.min, info.max, out=q)
        copy_channels_last(buf, arr)
        return buf

    def _outputs_of(self, x: Array, layout: str) -> list[np.ndarray]:
        if x is not self._buffer:
            self.bind(x, layout)  # finds out, on a first batch, whether the graph takes one
        if not (self._one_at_a_time and len(x) > 1):
            try:
                self._invoke()
            except (ValueError, RuntimeError):  # a graph with static shapes (a detector's) fails here instead
                if len(x) == 1:
                    raise
                self._one_at_a_time = True
        if self._one_at_a_time and len(x) > 1:
            return self._each_image(x, layout)
        it = self.interpreter
        return [read(it.get_tensor(index)) for index, read in self._outputs]

    def _each_image(self, x: Array, layout: str) -> list[np.ndarray]:
        arr = numpy(to_layout(x, layout, "NHWC"))
        return [np.concatenate(p) for p in zip(*(self._outputs_of(arr[i: i + 1], "NHWC") for i in range(len(arr))))]

    def run(self, x: Array, layout: str = "NCHW") -> Outputs:
        outs = self._outputs_of(x, layout)
        if len(outs) == 1:
            return outs[0]
        if not self.ours:  # TFLite_Detection_PostProcess: y1, x1, y2, x2; classes from 0; scores; count
            boxes, classes, scores, count = outs
            return (boxes[..., [1, 0, 3, 2]], scores, classes.astype(np.int64) + 1, count.astype(np.int64))
        return self._finish(tuple(torch.from_numpy(o) for o in outs))

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]:
        """The interpreter's invoke on ``x`` bound; for a graph that takes no batch, what :meth:`run`
        does instead (an invoke per image)."""
        bound = self.bind(x, layout)
        if bound is not self._buffer:
            return lambda: self._outputs_of(bound, "NHWC")
        return self._invoke


def _output_reader(dtype: np.dtype[Any], scale: float, zero_point: int, log: bool
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """What a LiteRT output becomes: dequantized when ``scale`` is set (0: a float output), then its log
    when ``log`` (a softmax's). An 8-bit output is read through a table of its 256 codes' values, one
    numpy call where the arithmetic took five (2.8 us against 4.6 us for 1001 classes)."""
    if scale and dtype.itemsize == 1:
        values = (np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32) - zero_point) * scale
        table = np.log(np.maximum(values, 1e-30)) if log else values
        return lambda out: table[out.view(np.uint8)]

    def read(out: np.ndarray) -> np.ndarray:
        value = (out.astype(np.float32) - zero_point) * scale if scale else out
        return np.log(np.maximum(value, 1e-30)) if log else value
    return read


def executorch_installed() -> bool:
    """ExecuTorch is an optional extra (``mobilenets[executorch]``)."""
    return importlib.util.find_spec("executorch") is not None


def require_executorch() -> None:
    """Say how to install ExecuTorch rather than fail on an import."""
    if not executorch_installed():
        raise ImportError("ExecuTorch is not installed: pip install 'mobilenets[executorch]'")


class ExecutorchSession:
    """ExecuTorch (XNNPACK delegate) on our ``.pte``: NCHW float batches in, run one image at a time
    (the program's static batch), our outputs out; config and classes from the program's metadata."""

    name = "executorch"
    layout = "NCHW"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require_executorch()
        with quiet_native_output():  # ExecuTorch's cpuinfo lines
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            if (threads or cpu_threads()) != portable_lib._threadpool_get_thread_count():
                portable_lib._unsafe_reset_threadpool(threads or cpu_threads())  # one pool per process
            try:
                program = Runtime.get().load_program(Path(path))
                self.method = program.load_method("forward")
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"{path}: not a loadable ExecuTorch program ({str(e).splitlines()[0]})") from None
            self.meta: dict[str, Any] = {}
            if PTE_META_METHOD in program.method_names:
                record = program.load_method(PTE_META_METHOD).execute([])[0]
                self.meta = json.loads(bytes(record.numpy().tolist()).decode())
        self.config: TaskConfig | None = config_from_dict(self.meta["config"]) if self.meta else None
        self.path = Path(path)
        self.image_shape = tuple(self.method.metadata.input_tensor_meta(0).sizes())[1:]
        self._finish = finisher(self.config)
        self._bound: tuple[np.ndarray, list[torch.Tensor]] | None = None  # an array and its images as tensors

    def _input(self, x: Array, layout: str) -> torch.Tensor:
        t = torch.as_tensor(numpy(to_layout(x, layout, "NCHW")), dtype=torch.float32)
        if tuple(t.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.path} takes {'x'.join(map(str, self.image_shape))} images (its program's "
                             f"static shape), not {'x'.join(map(str, t.shape[1:]))}: export at that --input-size")
        return t.contiguous()

    def _bind(self, x: Array, layout: str) -> tuple[np.ndarray, list[torch.Tensor]]:
        arr = np.ascontiguousarray(numpy(to_layout(x, layout, "NCHW")), dtype=np.float32)
        t = self._input(arr, "NCHW")  # shares the array's memory
        self._bound = (arr, [t[i: i + 1] for i in range(len(t))])  # the program takes one image per call
        return self._bound

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray:
        return self._bind(x, layout)[0]

    def run(self, x: Array, layout: str = "NCHW") -> Outputs:
        bound = self._bound if self._bound is not None and x is self._bound[0] else self._bind(x, layout)
        images = bound[1]
        if len(images) == 1:
            outs = list(self.method.execute(images))
        else:
            parts = [self.method.execute([image]) for image in images]
            outs = [torch.cat(p) for p in zip(*parts)]
        return self._finish(outs[0] if len(outs) == 1 else tuple(outs))

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]:
        images = self._bind(numpy(to_layout(x, layout, "NCHW"))[:1], "NCHW")[1]
        return lambda: self.method.execute(images)


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """Our JSON record in an ONNX file's metadata (empty for another's file)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[META_KEY]) if META_KEY in props else {}


def openvino_installed() -> bool:
    """OpenVINO is an optional extra (``mobilenets[openvino]``)."""
    return importlib.util.find_spec("openvino") is not None


class OpenvinoSession:
    """OpenVINO's CPU plugin on our ``.onnx`` (fp32, or the QDQ int8 export, which it runs in int8):
    NCHW batches in, our outputs out. fp32 graphs run in fp32 (``INFERENCE_PRECISION_HINT``: the plugin
    would otherwise choose bf16 on CPUs with AVX512-BF16 or AMX), tuned for latency."""

    name = "openvino"
    layout = "NCHW"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if not openvino_installed():
            raise ImportError("OpenVINO is not installed: pip install 'mobilenets[openvino]'")
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads or cpu_threads(),
                                                              "PERFORMANCE_HINT": "LATENCY",
                                                              "INFERENCE_PRECISION_HINT": "f32"})
        except RuntimeError as e:
            raise ValueError(f"{path}: not a model OpenVINO can run ({str(e).splitlines()[0]})") from None
        self.request = self.compiled.create_infer_request()
        self._tensor = ov.Tensor
        self._outputs = len(self.compiled.outputs)
        self._shared: np.ndarray | None = None
        self.meta: dict[str, Any] = onnx_metadata(path)
        self.config: TaskConfig | None = config_from_dict(self.meta["config"]) if "config" in self.meta else None
        self.path = Path(path)

    def bind(self, x: Array, layout: str = "NCHW") -> np.ndarray:
        arr = np.ascontiguousarray(numpy(to_layout(x, layout, "NCHW")), dtype=np.float32)
        if arr is not self._shared:  # the request reads the array itself, so the same array needs no new tensor
            self.request.set_input_tensor(0, self._tensor(arr, shared_memory=True))
            self._shared = arr  # kept alive while the request points at its memory
        return arr

    def run(self, x: Array, layout: str = "NCHW") -> Outputs:
        if x is not self._shared:
            self.bind(x, layout)
        self.request.infer()
        outs = [self.request.get_output_tensor(i).data.copy() for i in range(self._outputs)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def raw(self, x: Array, layout: str = "NCHW") -> Callable[[], object]:
        self.bind(x, layout)
        return self.request.infer
