"""The genbench model zoo: reference implementations behind one registry.

``MODELS[name]`` is a :class:`zoo.registry.ModelEntry`; ``MODELS[name].build(overrides,
data_shape)`` makes the model. Which metrics apply is decided by the capabilities a model
implements (``genbench.protocols``), never by its name.
"""

from zoo.baselines import RawPixels, RawPixelsConfig
from zoo.betavae import BetaVAE, BetaVAEConfig
from zoo.bigan import BiGAN, BiGANConfig
from zoo.gans import GAN, GANConfig
from zoo.hvae import HVAE, HVAEConfig
from zoo.iwae import IWAE, IWAEConfig
from zoo.pixelcnn import PixelCNN, PixelCNNConfig
from zoo.pixelvae import PixelVAE, PixelVAEConfig
from zoo.ppca import PPCA, PPCAConfig
from zoo.realnvp import RealNVP, RealNVPConfig
from zoo.registry import MODELS, ModelEntry
from zoo.vlae import VLAE, VLAEConfig

MODELS.register("ppca", ModelEntry(
    "ppca", PPCA, PPCAConfig,
    "probabilistic PCA, closed-form fit; exact likelihood and exact posterior"))
MODELS.register("vae", ModelEntry(
    "vae", IWAE, IWAEConfig,
    "VAE of the IWAE paper: mean of k ELBO terms; 1 or 2 stochastic layers",
    defaults={"objective": "vae"}))
MODELS.register("iwae", ModelEntry(
    "iwae", IWAE, IWAEConfig,
    "IWAE (Burda et al. 2015): trains the k-sample bound L_k; 1 or 2 stochastic layers",
    defaults={"objective": "iwae"}))
MODELS.register("hvae", ModelEntry(
    "hvae", HVAE, HVAEConfig,
    "VampPrior paper's VAE / 2-level HVAE (gated dense 300, latents 40+40); prior standard, mog, "
    "vamp or vamp-data"))
MODELS.register("betavae", ModelEntry(
    "betavae", BetaVAE, BetaVAEConfig,
    "beta-VAE (Higgins et al. 2017), conv nets for 64x64 dSprites, latent 10; optional controlled "
    "capacity (Burgess et al. 2018)"))
MODELS.register("raw_pixels", ModelEntry(
    "raw_pixels", RawPixels, RawPixelsConfig,
    "baseline representation r(x) = x for the disentanglement metrics (not a generative model)"))
MODELS.register("vlae", ModelEntry(
    "vlae", VLAE, VLAEConfig,
    "Variational Lossy Autoencoder (Chen et al. 2016): AF prior, local 6-layer PixelCNN decoder, "
    "latent 32"))
MODELS.register("gan", ModelEntry(
    "gan", GAN, GANConfig,
    "DCGAN networks (Radford et al. 2016), non-saturating generator loss, Adam (0.5, 0.999); "
    "28x28 and 32x32 images", defaults={"objective": "gan"}))
MODELS.register("wgan", ModelEntry(
    "wgan", GAN, GANConfig,
    "Wasserstein GAN (Arjovsky et al. 2017): DCGAN critic clipped to [-0.01, 0.01], RMSProp, n_critic 5",
    defaults={"objective": "wgan", "optimizer": "rmsprop", "n_critic": 5, "warm_critic_steps": 100}))
MODELS.register("wgan-gp", ModelEntry(
    "wgan-gp", GAN, GANConfig,
    "WGAN-GP (Gulrajani et al. 2017): gradient penalty 10, critic without batch norm, Adam (0.5, 0.9), "
    "n_critic 5",
    defaults={"objective": "wgan-gp", "critic_norm": "none", "n_critic": 5, "adam_beta2": 0.9}))
MODELS.register("bigan", ModelEntry(
    "bigan", BiGAN, BiGANConfig,
    "BiGAN / ALI (Donahue et al. 2017, Dumoulin et al. 2017): generator, encoder, joint discriminator "
    "on (x, z); latent 50"))

MODELS.register("realnvp", ModelEntry(
    "realnvp", RealNVP, RealNVPConfig,
    "RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): multi-scale affine couplings on dequantized, logit 8-bit "
    "images; exact likelihood"))
MODELS.register("pixelcnn", ModelEntry(
    "pixelcnn", PixelCNN, PixelCNNConfig,
    "gated PixelCNN (van den Oord et al. 2016): vertical and horizontal stacks, exact likelihood; "
    "output bernoulli or softmax256"))
MODELS.register("pixelvae", ModelEntry(
    "pixelvae", PixelVAE, PixelVAEConfig,
    "PixelVAE (Gulrajani et al. 2016): VAE with a 3-layer gated PixelCNN decoder conditioned on a map "
    "of z; latent 16"))

__all__ = ["MODELS", "ModelEntry"]
