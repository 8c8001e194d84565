"""Train the three example models briefly and save their weights as another project would.

    python examples/score_your_own/make_weights.py OUT_DIR [--steps 3000]

writes ``OUT_DIR/vae.pt`` (a dict ``{"state_dict": ..., "epoch": ...}`` saved by ``torch.save``, as
a training script elsewhere leaves it), ``OUT_DIR/generator.pt`` (TorchScript) and
``OUT_DIR/flow.safetensors``. The data come through genbench's loaders (``GENBENCH_DATA``);
the training is the examples' own, plain PyTorch, seeded.
"""

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from my_flow import MyFlow  # noqa: E402
from my_generator import Discriminator, Generator  # noqa: E402
from my_vae import MyVAE  # noqa: E402


def batches(data, steps, size, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield data[torch.randint(len(data), (size,), generator=gen)]


def train_vae(data, steps, seed=0):
    torch.manual_seed(seed)
    model = MyVAE(pixels=data[0].numel())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x in batches(data, steps, 100, seed):
        loss = -model.log_importance_weights(x, 1).mean()  # the negative ELBO
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def train_flow(data, steps, seed=0):
    torch.manual_seed(seed)
    model = MyFlow(pixels=data[0].numel())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x in batches(data, steps, 100, seed):
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def train_gan(data, steps, seed=0, latent=16):
    """The non-saturating GAN loss, one discriminator and one generator step per batch."""
    torch.manual_seed(seed)
    side = data.shape[-1]
    generator, critic = Generator(latent, side=side), Discriminator(pixels=side * side)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.999))
    softplus = torch.nn.functional.softplus
    for x in batches(data, steps, 64, seed):
        fake = generator(torch.randn(len(x), latent))
        loss_d = softplus(-critic(x)).mean() + softplus(critic(fake.detach())).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = softplus(-critic(fake)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return generator


def main(argv=None):
    from genbench.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--binary", default="binarized_mnist", help="data set of the VAE")
    parser.add_argument("--gray", default="mnist8", help="data set of the GAN and the flow")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    binary = load_dataset(args.binary).eval_tensor("train")
    gray = load_dataset(args.gray).eval_tensor("train")
    vae = train_vae(binary, args.steps)
    torch.save({"state_dict": vae.state_dict(), "epoch": 1}, args.out / "vae.pt")
    torch.jit.script(train_gan(gray, args.steps).eval()).save(str(args.out / "generator.pt"))
    save_file(train_flow(gray, args.steps).state_dict(), str(args.out / "flow.safetensors"))


if __name__ == "__main__":
    main()
