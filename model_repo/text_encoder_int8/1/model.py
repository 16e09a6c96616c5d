"""Triton Python backend model: serves the TorchScript artifact `model.pt` of this version directory.

Generic over the model: tensor names and dtypes come from config.pbtxt, so text_encoder and
image_classifier ship the same file. `model.pt` is built by `hybridserve models build`; it needs
only torch here, not the kit's code.
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

ARTIFACT = "model.pt"


def _intra_op_threads(config: dict) -> int:
    """Threads per instance: config parameter `torch_num_threads`, else the usable CPUs split across instances."""
    explicit = config.get("parameters", {}).get("torch_num_threads", {}).get("string_value")
    if explicit:
        return max(1, int(explicit))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    instances = sum(int(g.get("count", 1) or 1) for g in config.get("instance_group", [])) or 1
    return max(1, cpus // instances)


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
        self.model = torch.jit.load(path, map_location="cpu").eval()

    def execute(self, requests):
        # One forward pass for the whole dynamic batch: concatenate along the batch dimension, split after.
        try:
            arrays = {
                name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests] for name in self.inputs
            }
            sizes = [a.shape[0] for a in arrays[self.inputs[0]]]
            batch = [torch.from_numpy(np.concatenate(arrays[name])) for name in self.inputs]
            with torch.inference_mode():
                result = self.model(*batch)
            if isinstance(result, torch.Tensor):
                result = (result,)
            outputs = [t.numpy().astype(dtype, copy=False) for t, (_, dtype) in zip(result, self.outputs)]
        except Exception as exc:  # every request of the batch gets the error instead of a crashed stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]

        bounds = np.cumsum(sizes)[:-1]
        per_output = [np.split(out, bounds) for out in outputs]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(parts[i]))
                    for (name, _), parts in zip(self.outputs, per_output)
                ]
            )
            for i in range(len(requests))
        ]
