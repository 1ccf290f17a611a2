"""jaxvae: variational autoencoders as pure JAX functions, named as in the papers.

q_phi(z|x) is the encoder (the amortized approximate posterior), p_theta(x|z) the
decoder (the likelihood), p(z) the prior; training maximizes the reparameterized
ELBO = E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)).

The library is in layers, each a folder that imports only the ones before it: ``core`` (the
maths and the model), ``training`` (the jitted step and epoch, checkpoints, devices), ``watch``
(progress, figures, callbacks, TensorBoard and W&B), ``runs`` (configs, run folders, sweeps,
evaluation) and ``tools`` (the command line, the launcher, teaching pictures, the explorer).

The extension points are values: a model (:meth:`VAE.from_modules` from two Linen modules,
a :class:`Likelihood`, a :class:`Prior` and a :class:`Posterior`), an :class:`Objective`, and
a :class:`Dataset`; :func:`train_and_evaluate`, :func:`run_sweep`, :func:`evaluate_run` and
:func:`inference_gaps` take them (see docs/extending.md), and so does a :class:`Callback`, which
a run calls on the host after each epoch. :mod:`jaxvae.core.flows` (the inverse
autoregressive flow posterior) and :mod:`jaxvae.core.ladder` (the Ladder VAE) are built on them.
"""

import sys as _sys

from jaxvae.core import distributions, flows, ladder, likelihoods, nets, networks, objectives, posteriors, priors
from jaxvae.core.data import Dataset, dynamic_binarize, static_binarize
from jaxvae.core.distributions import (
  Gaussian,
  bernoulli_log_prob,
  gaussian_kl,
  gaussian_kl_to_standard_normal,
  gaussian_log_prob,
  gaussian_sample,
  standard_normal_log_prob,
)
from jaxvae.core.estimators import importance_sampled_log_px
from jaxvae.core.likelihoods import Likelihood
from jaxvae.core.model import VAE
from jaxvae.core.networks import Network, as_network
from jaxvae.core.objectives import (
  ELBOTerms,
  ImportanceTerms,
  Objective,
  beta_elbo_loss,
  elbo,
  importance_terms,
  iwae_bound,
  kl_warmup,
)
from jaxvae.core.posteriors import Posterior
from jaxvae.core.priors import Prior
from jaxvae.errors import JaxvaeError, RunStopped, UserCodeError
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run, inference_gaps
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sources import load_dataset, load_folder, load_mnist, load_npy, load_npz
from jaxvae.runs.sweep import run_sweep, train_group
from jaxvae.training.train import EMA, Trainer, TrainState, make_trainer
from jaxvae.watch import callbacks, writers
from jaxvae.watch.callbacks import Callback
from jaxvae.watch.writers import tensorboard, wandb

__version__ = "0.2.0"

# The modules a model is built from keep their short import paths (``from jaxvae.likelihoods import
# gaussian``, ``import jaxvae.nets``) besides their place in the layers (``jaxvae.core.likelihoods``).
PUBLIC_MODULES = (
  callbacks,
  distributions,
  flows,
  ladder,
  likelihoods,
  nets,
  networks,
  objectives,
  posteriors,
  priors,
  writers,
)
for _module in PUBLIC_MODULES:
  _sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[-1]}"] = _module

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
  "Network",
  "Objective",
  "Posterior",
  "Prior",
  "RunStopped",
  "TrainState",
  "UserCodeError",
  "Trainer",
  "VAE",
  "as_network",
  "bernoulli_log_prob",
  "beta_elbo_loss",
  "callbacks",
  "distributions",
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
  "nets",
  "networks",
  "load_dataset",
  "load_folder",
  "load_mnist",
  "load_npy",
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
