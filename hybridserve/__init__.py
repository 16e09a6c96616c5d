"""hybridserve: deploy Triton-served PyTorch models onto a hybrid OpenStack + AWS cloud.

The data plane (models, sync, local plane) lives here and never imports Pulumi, so it
runs alone in CI steps and containers. The Pulumi program lives in `infra/`.
"""

__version__ = "0.1.0"
