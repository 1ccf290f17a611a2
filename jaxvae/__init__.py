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
from jaxvae.evaluate import evaluate_run, importance_sampled_log_px
from jaxvae.model import VAE, make_vae
from jaxvae.objectives import ELBOTerms, ImportanceTerms, beta_elbo_loss, elbo, importance_terms, iwae_bound, kl_warmup
from jaxvae.sweep import run_sweep, train_group
from jaxvae.run import RunStopped, train_and_evaluate
from jaxvae.train import HParams, Trainer, TrainState, make_optimizer, make_trainer

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ELBOTerms",
    "Gaussian",
    "HParams",
    "ImageDataset",
    "ImportanceTerms",
    "JaxvaeError",
    "RunStopped",
    "TrainState",
    "Trainer",
    "VAE",
    "bernoulli_log_prob",
    "beta_elbo_loss",
    "dynamic_binarize",
    "elbo",
    "evaluate_run",
    "gaussian_kl",
    "gaussian_kl_to_standard_normal",
    "gaussian_log_prob",
    "gaussian_sample",
    "importance_sampled_log_px",
    "importance_terms",
    "iwae_bound",
    "kl_warmup",
    "load_dataset",
    "load_mnist",
    "make_optimizer",
    "make_trainer",
    "make_vae",
    "run_sweep",
    "standard_normal_log_prob",
    "static_binarize",
    "train_and_evaluate",
    "train_group",
]
