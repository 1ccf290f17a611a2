"""jaxvae: variational autoencoders as pure JAX functions, named as in the papers.

q_phi(z|x) is the encoder (the amortized approximate posterior), p_theta(x|z) the
decoder (the likelihood), p(z) the prior; training maximizes the reparameterized
ELBO = E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)).
"""

from jaxvae.config import Config, JaxvaeError
from jaxvae.data import ImageDataset, dynamic_binarize, load_dataset, load_mnist, static_binarize
from jaxvae.distributions import (
    Gaussian,
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_kl_to_standard_normal,
    gaussian_log_prob,
    gaussian_sample,
    standard_normal_log_prob,
)
from jaxvae.model import VAE, make_vae
from jaxvae.objectives import ELBOTerms, beta_elbo_loss, elbo
from jaxvae.train import HParams, Trainer, TrainState, make_optimizer, make_trainer, train_and_evaluate

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ELBOTerms",
    "Gaussian",
    "HParams",
    "ImageDataset",
    "JaxvaeError",
    "TrainState",
    "Trainer",
    "VAE",
    "bernoulli_log_prob",
    "beta_elbo_loss",
    "dynamic_binarize",
    "elbo",
    "gaussian_kl",
    "gaussian_kl_to_standard_normal",
    "gaussian_log_prob",
    "gaussian_sample",
    "load_dataset",
    "load_mnist",
    "make_optimizer",
    "make_trainer",
    "make_vae",
    "standard_normal_log_prob",
    "static_binarize",
    "train_and_evaluate",
]
