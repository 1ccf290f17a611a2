"""jaxvae: variational autoencoders as pure JAX functions, named as in the papers.

q_phi(z|x) is the encoder (the amortized approximate posterior), p_theta(x|z) the
decoder (the likelihood), p(z) the prior; training maximizes the reparameterized
ELBO = E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)).

The extension points are values: a model (:meth:`VAE.from_modules` from two Linen modules,
a :class:`Likelihood`, a :class:`Prior` and a :class:`Posterior`), an :class:`Objective`, and
a :class:`Dataset`; :func:`train_and_evaluate`, :func:`run_sweep`, :func:`evaluate_run` and
:func:`inference_gaps` take them (see docs/extending.md), and so does a :class:`Callback`, which
a run calls on the host after each epoch. :mod:`jaxvae.flows` (the inverse
autoregressive flow posterior) and :mod:`jaxvae.ladder` (the Ladder VAE) are built on them.
"""

from jaxvae import callbacks, flows, ladder, likelihoods, objectives, posteriors, priors, writers
from jaxvae.callbacks import Callback
from jaxvae.config import Config
from jaxvae.data import Dataset, dynamic_binarize, load_dataset, load_mnist, load_npz, static_binarize
from jaxvae.distributions import (
  Gaussian,
  bernoulli_log_prob,
  gaussian_kl,
  gaussian_kl_to_standard_normal,
  gaussian_log_prob,
  gaussian_sample,
  standard_normal_log_prob,
)
from jaxvae.errors import JaxvaeError
from jaxvae.estimators import importance_sampled_log_px
from jaxvae.evaluate import evaluate_run, inference_gaps
from jaxvae.likelihoods import Likelihood
from jaxvae.model import VAE
from jaxvae.objectives import (
  ELBOTerms,
  ImportanceTerms,
  Objective,
  beta_elbo_loss,
  elbo,
  importance_terms,
  iwae_bound,
  kl_warmup,
)
from jaxvae.posteriors import Posterior
from jaxvae.priors import Prior
from jaxvae.run import RunStopped, train_and_evaluate
from jaxvae.sweep import run_sweep, train_group
from jaxvae.train import EMA, Trainer, TrainState, make_trainer
from jaxvae.writers import tensorboard, wandb

__version__ = "0.2.0"

__all__ = [
  "Callback",
  "Config",
  "Dataset",
  "EMA",
  "ELBOTerms",
  "Gaussian",
  "ImportanceTerms",
  "JaxvaeError",
  "Likelihood",
  "Objective",
  "Posterior",
  "Prior",
  "RunStopped",
  "TrainState",
  "Trainer",
  "VAE",
  "bernoulli_log_prob",
  "beta_elbo_loss",
  "callbacks",
  "dynamic_binarize",
  "elbo",
  "evaluate_run",
  "flows",
  "gaussian_kl",
  "gaussian_kl_to_standard_normal",
  "gaussian_log_prob",
  "gaussian_sample",
  "importance_sampled_log_px",
  "importance_terms",
  "inference_gaps",
  "iwae_bound",
  "kl_warmup",
  "ladder",
  "likelihoods",
  "load_dataset",
  "load_mnist",
  "load_npz",
  "make_trainer",
  "objectives",
  "posteriors",
  "priors",
  "run_sweep",
  "standard_normal_log_prob",
  "static_binarize",
  "tensorboard",
  "wandb",
  "train_and_evaluate",
  "train_group",
  "writers",
]
