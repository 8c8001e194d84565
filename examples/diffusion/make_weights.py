"""Train examples/diffusion/my_diffusion.py's Net on 8-bit MNIST with plain PyTorch and save its weights.

    GENBENCH_DATA=../shared/data python examples/diffusion/make_weights.py weights/

writes weights/diffusion.safetensors (3000 steps of batch 64, a few minutes on a CPU), which
`genbench score weights/diffusion.safetensors --model-code examples/diffusion/my_diffusion.py:Net
--dataset mnist8` scores. Nothing here imports genbench but the MNIST reader.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from my_diffusion import Net, loss  # noqa: E402


def train_diffusion(x_train: torch.Tensor, steps: int = 3000, batch: int = 64, lr: float = 1e-3,
                    **init) -> Net:
    """Net(**init) trained on ``steps`` batches of x_train ([N, C, H, W] in [0, 1]) with Adam."""
    torch.manual_seed(0)
    model = Net(**init)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = x_train[torch.randint(0, len(x_train), (batch,))]
        optimizer.zero_grad()
        loss(model, x).backward()
        optimizer.step()
    return model.eval()


def main(out: Path) -> None:
    from genbench.data import load_dataset

    x_train = load_dataset("mnist8").eval_tensor("train")
    out.mkdir(parents=True, exist_ok=True)
    save_file(train_diffusion(x_train).state_dict(), str(out / "diffusion.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "weights"))
