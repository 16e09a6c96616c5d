"""The served models: their PyTorch code and the tensors Triton sees.

Shared by `hybridserve models build` (which traces them to TorchScript), by
`hybridserve models validate` (which checks each config.pbtxt against `MODEL_SPECS`) and by the tests.
Any change to this file changes the build fingerprint, so the next build rebuilds the artifacts.

`MODEL_SPECS` and the dataclasses need no torch; the nn.Modules import it when first used, so
validation stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

# Triton data type -> numpy dtype name (the subset the kit's models use, plus the common ones).
TRITON_TO_NUMPY: dict[str, str] = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_UINT16": "uint16",
    "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as config.pbtxt declares it (dims without the batch dimension)."""

    name: str
    data_type: str  # Triton's enum name, e.g. "TYPE_FP32"
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> str:
        return TRITON_TO_NUMPY[self.data_type]


@dataclass(frozen=True)
class ModelSpec:
    """What the model code produces: tensor specs, the artifact file, and how to build it."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    seed: int
    factory: Callable[[], "torch.nn.Module"] = field(repr=False, compare=False)
    sample_inputs: Callable[["np.random.Generator", int], dict[str, "np.ndarray"]] = field(repr=False, compare=False)
    artifact: str = "model.pt"
    version: int = 1  # the version directory the build writes


# --- text_encoder --------------------------------------------------------------------------------

TEXT_VOCAB = 1000
TEXT_SEQ_LEN = 32
TEXT_D_MODEL = 64
TEXT_HEADS = 4
TEXT_LAYERS = 2
PAD_ID = 0


def _text_encoder_cls():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class EncoderBlock(nn.Module):
        """Pre-norm self-attention + MLP block.

        Written out rather than nn.TransformerEncoderLayer: that layer (and nn.MultiheadAttention)
        switches to a fused kernel under no_grad/inference_mode, so the traced graph, eager reference
        and server would not run the same ops.
        """

        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(TEXT_D_MODEL)
            self.qkv = nn.Linear(TEXT_D_MODEL, 3 * TEXT_D_MODEL)
            self.proj = nn.Linear(TEXT_D_MODEL, TEXT_D_MODEL)
            self.norm2 = nn.LayerNorm(TEXT_D_MODEL)
            self.mlp = nn.Sequential(
                nn.Linear(TEXT_D_MODEL, 4 * TEXT_D_MODEL), nn.GELU(), nn.Linear(4 * TEXT_D_MODEL, TEXT_D_MODEL)
            )

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, TEXT_HEADS, d // TEXT_HEADS).permute(2, 0, 3, 1, 4).unbind(0)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.norm2(x))

    class TextEncoder(nn.Module):
        """Token ids [B, 32] (0 = padding) -> L2-normalised mean-pooled embedding [B, 64]."""

        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(TEXT_VOCAB, TEXT_D_MODEL, padding_idx=PAD_ID)
            self.pos = nn.Parameter(torch.randn(1, TEXT_SEQ_LEN, TEXT_D_MODEL) * 0.02)
            self.blocks = nn.ModuleList(EncoderBlock() for _ in range(TEXT_LAYERS))
            self.norm = nn.LayerNorm(TEXT_D_MODEL)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            valid = input_ids != PAD_ID
            # Position 0 always counts, so an all-padding row gives a finite embedding instead of NaN.
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, 1:]], dim=1)
            attn_mask = valid[:, None, None, :]  # [B, 1, 1, T]: every query attends to the real tokens only
            x = self.tok(input_ids) + self.pos[:, : input_ids.shape[1]]
            for block in self.blocks:
                x = block(x, attn_mask)
            x = self.norm(x)
            w = valid.unsqueeze(-1).to(x.dtype)
            pooled = (x * w).sum(dim=1) / w.sum(dim=1)
            return F.normalize(pooled, p=2.0, dim=-1)

    return TextEncoder


def text_encoder() -> "torch.nn.Module":
    return _text_encoder_cls()()


def text_samples(rng: "np.random.Generator", n: int) -> dict[str, "np.ndarray"]:
    """n right-padded token sequences of random length 4..32."""
    import numpy as np

    ids = np.zeros((n, TEXT_SEQ_LEN), dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(4, TEXT_SEQ_LEN + 1))
        ids[i, :length] = rng.integers(1, TEXT_VOCAB, size=length)
    return {"input_ids": ids}


# --- image_classifier ----------------------------------------------------------------------------

IMAGE_CLASSES = 10


def image_classifier() -> "torch.nn.Module":
    """A small CNN: image [B, 3, 32, 32] -> logits [B, 10]."""
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, IMAGE_CLASSES),
    )


def image_samples(rng: "np.random.Generator", n: int) -> dict[str, "np.ndarray"]:
    """n standard-normal images (what a normalised input looks like)."""
    import numpy as np

    return {"image": rng.standard_normal((n, 3, 32, 32)).astype(np.float32)}


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="text_encoder",
            inputs=(TensorSpec("input_ids", "TYPE_INT64", (TEXT_SEQ_LEN,)),),
            outputs=(TensorSpec("embedding", "TYPE_FP32", (TEXT_D_MODEL,)),),
            seed=1234,
            factory=text_encoder,
            sample_inputs=text_samples,
        ),
        ModelSpec(
            name="image_classifier",
            inputs=(TensorSpec("image", "TYPE_FP32", (3, 32, 32)),),
            outputs=(TensorSpec("logits", "TYPE_FP32", (IMAGE_CLASSES,)),),
            seed=4321,
            factory=image_classifier,
            sample_inputs=image_samples,
        ),
    )
}
