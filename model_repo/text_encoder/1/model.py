"""Triton Python backend model: serves the TorchScript artifact `model.pt` of this version directory.

Generic over the model: tensor names and dtypes come from config.pbtxt, so text_encoder and
image_classifier ship the same file. `model.pt` is built by `hybridserve models build`; it needs
only torch here, not the kit's code.

Per dynamic batch, not per request: one forward pass; the inputs of a single-request batch go to torch
without a copy; each response gets a view of its rows of the output (bench/bench_serving.py measures what
this costs next to the forward pass).
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

ARTIFACT = "model.pt"


def _intra_op_threads(config: dict) -> int:
    """Threads per instance: config parameter `torch_num_threads`, else the usable CPUs but one, split across instances.

    One CPU is left to Triton itself (gRPC/HTTP frontends, the dynamic batcher, the Python backend's copies and
    messages to this stub) and to clients on the same host: torch's OpenMP threads wait for each other at every
    operator, so one of them descheduled stalls the whole forward pass. Measured on 2 CPUs (bench/bench_serving.py):
    2 threads ran a text_encoder batch in ~70 ms under load where 1 thread took ~5 ms.
    """
    explicit = config.get("parameters", {}).get("torch_num_threads", {}).get("string_value")
    if explicit:
        return max(1, int(explicit))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    instances = sum(int(g.get("count", 1) or 1) for g in config.get("instance_group", [])) or 1
    return max(1, (cpus - 1) // instances)


def _device(args: dict) -> "torch.device":
    """The instance's device: a KIND_GPU instance (the edge GPU rendering) runs on the GPU Triton gave it.

    On the CPU `.to(device)` and `.cpu()` return the tensor itself: no copy. A GPU instance without a CUDA
    device torch can use fails its load, rather than serving from the CPU at a fraction of the SLO.
    """
    if args.get("model_instance_kind") != "GPU":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("a KIND_GPU instance, but torch sees no CUDA device (NVIDIA driver and a CUDA build of torch are needed)")
    return torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        torch.set_num_threads(_intra_op_threads(config))
        try:
            torch.set_num_interop_threads(1)  # one graph at a time per instance; extra pools only cost memory
        except RuntimeError:  # already set by an earlier instance in this stub process
            pass
        path = os.path.join(args["model_repository"], args["model_version"], ARTIFACT)
        self.device = _device(args)
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):
        # One forward pass for the whole dynamic batch: concatenate along the batch dimension, slice after.
        try:
            sizes = None
            batch = []
            for name in self.inputs:
                arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                if sizes is None:
                    sizes = [a.shape[0] for a in arrays]
                batch.append(torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays)).to(self.device))
            with torch.inference_mode():
                result = self.model(*batch)
            if isinstance(result, torch.Tensor):
                result = (result,)
            outputs = [t.cpu().numpy().astype(dtype, copy=False) for t, (_, dtype) in zip(result, self.outputs)]
        except Exception as exc:  # every request of the batch gets the error instead of a crashed stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]

        # Row slices of a C-contiguous array are contiguous views: no copy before the backend's own.
        responses = []
        start = 0
        for size in sizes:
            end = start + size
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, out[start:end]) for (name, _), out in zip(self.outputs, outputs)]
            ))
            start = end
        return responses
