"""The genbench model zoo: reference implementations, genbench's first plugin.

``ENTRIES`` lists the zoo's models; the package registers them through the ``genbench.zoo``
entry-point group (``pyproject.toml``), exactly as a third-party package does, so genbench
itself never imports ``zoo``. ``MODELS[name]`` (the one registry, ``genbench.core.models``)
is a :class:`~genbench.core.models.ModelEntry`; ``MODELS[name].build(overrides, data_shape)``
makes the model. Which metrics apply is decided by the capabilities a model implements
(``genbench.core.protocols``), never by its name. The zoo depends only on ``genbench.core``.
"""

from genbench.core.models import MODELS, ModelEntry
from zoo.baselines import RawPixels, RawPixelsConfig
from zoo.betavae import BetaVAE, BetaVAEConfig
from zoo.bigan import BiGAN, BiGANConfig
from zoo.ddpm import DDPM, DDPMConfig
from zoo.flow_matching import FlowMatching, FlowMatchingConfig
from zoo.gans import GAN, GANConfig
from zoo.hvae import HVAE, HVAEConfig
from zoo.iwae import IWAE, IWAEConfig
from zoo.pixelcnn import PixelCNN, PixelCNNConfig
from zoo.pixelvae import PixelVAE, PixelVAEConfig
from zoo.ppca import PPCA, PPCAConfig
from zoo.realnvp import RealNVP, RealNVPConfig
from zoo.vdm import VDM, VDMConfig
from zoo.vlae import VLAE, VLAEConfig

#: every model of the zoo, registered through the ``genbench.zoo`` entry point ``zoo:ENTRIES``
ENTRIES: list[ModelEntry] = [
    ModelEntry(
        "ppca", PPCA, PPCAConfig,
        "probabilistic PCA, closed-form fit; exact likelihood and exact posterior"),
    ModelEntry(
        "vae", IWAE, IWAEConfig,
        "VAE of the IWAE paper: mean of k ELBO terms; 1 or 2 stochastic layers",
        defaults={"objective": "vae"}),
    ModelEntry(
        "iwae", IWAE, IWAEConfig,
        "IWAE (Burda et al. 2015): trains the k-sample bound L_k; 1 or 2 stochastic layers",
        defaults={"objective": "iwae"}),
    ModelEntry(
        "hvae", HVAE, HVAEConfig,
        "VampPrior paper's VAE / 2-level HVAE (gated dense 300, latents 40+40); prior standard, mog, "
        "vamp or vamp-data"),
    ModelEntry(
        "betavae", BetaVAE, BetaVAEConfig,
        "beta-VAE (Higgins et al. 2017), conv nets for 64x64 dSprites, latent 10; optional controlled "
        "capacity (Burgess et al. 2018)"),
    ModelEntry(
        "raw_pixels", RawPixels, RawPixelsConfig,
        "baseline representation r(x) = x for the disentanglement metrics (not a generative model)"),
    ModelEntry(
        "vlae", VLAE, VLAEConfig,
        "Variational Lossy Autoencoder (Chen et al. 2016): AF prior, local 6-layer PixelCNN decoder, "
        "latent 32"),
    ModelEntry(
        "gan", GAN, GANConfig,
        "DCGAN networks (Radford et al. 2016), non-saturating generator loss, Adam (0.5, 0.999); "
        "28x28 and 32x32 images", defaults={"objective": "nonsaturating"}),
    ModelEntry(
        "wgan", GAN, GANConfig,
        "Wasserstein GAN (Arjovsky et al. 2017): DCGAN critic clipped to [-0.01, 0.01], RMSProp, n_critic 5",
        defaults={"objective": "wasserstein-clip", "optimizer": "rmsprop", "n_critic": 5,
                  "warm_critic_steps": 100}),
    ModelEntry(
        "wgan-gp", GAN, GANConfig,
        "WGAN-GP (Gulrajani et al. 2017): gradient penalty 10, critic without batch norm, Adam (0.5, 0.9), "
        "n_critic 5",
        defaults={"objective": "wasserstein-gp", "critic_norm": "none", "n_critic": 5, "adam_beta2": 0.9}),
    ModelEntry(
        "bigan", BiGAN, BiGANConfig,
        "BiGAN / ALI (Donahue et al. 2017, Dumoulin et al. 2017): generator, encoder, joint discriminator "
        "on (x, z); latent 50"),
    ModelEntry(
        "realnvp", RealNVP, RealNVPConfig,
        "RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): multi-scale affine couplings on dequantized, "
        "logit 8-bit images; exact likelihood"),
    ModelEntry(
        "pixelcnn", PixelCNN, PixelCNNConfig,
        "gated PixelCNN (van den Oord et al. 2016): vertical and horizontal stacks, exact likelihood; "
        "output bernoulli or softmax256"),
    ModelEntry(
        "pixelvae", PixelVAE, PixelVAEConfig,
        "PixelVAE (Gulrajani et al. 2016): VAE with a 3-layer gated PixelCNN decoder conditioned on a map "
        "of z; latent 16"),
    ModelEntry(
        "ddpm", DDPM, DDPMConfig,
        "DDPM (Ho et al. 2020): T = 1000 linear beta, eps-prediction U-Net, L_simple; L_vlb with the "
        "discretised decoder; ancestral sampling"),
    ModelEntry(
        "vdm", VDM, VDMConfig,
        "Variational Diffusion Model (Kingma et al. 2021): learned monotone log-SNR, continuous-time bound "
        "with antithetic times, factorised decoder"),
    ModelEntry(
        "flow-matching", FlowMatching, FlowMatchingConfig,
        "flow matching (Lipman et al. 2023): optimal-transport Gaussian path, velocity U-Net; likelihood "
        "through the probability-flow ODE"),
]

__all__ = ["ENTRIES", "MODELS", "ModelEntry"]
