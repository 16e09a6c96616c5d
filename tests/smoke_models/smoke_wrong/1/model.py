"""Smoke-gate test model: OUTPUT0 = INPUT0 * 2 + OFFSET, numpy only.

`smoke_wrong` is the same file with OFFSET read from its name: its outputs miss the reference by 0.01.
Optional parameter `delay_ms` (config.pbtxt) sleeps per execution to make a slow model.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.offset = np.float32(1.01 if config["name"].endswith("wrong") else 1.0)
        params = config.get("parameters", {})
        self.delay = float(params.get("delay_ms", {}).get("string_value", "0")) / 1000.0

    def execute(self, requests):
        if self.delay:
            time.sleep(self.delay)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            y = (x * np.float32(2) + self.offset).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
        return responses
