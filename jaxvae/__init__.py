"""jaxvae: variational autoencoders as pure JAX functions, named as in the papers.

q_phi(z|x) is the encoder (the amortized approximate posterior), p_theta(x|z) the decoder (the
likelihood), p(z) the prior; training maximizes the reparameterized ELBO
E_q[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)), in nats per example.

Train and evaluate (the command line ``jaxvae train|sweep|eval|gaps`` is these calls)::

  import jaxvae
  summary = jaxvae.train_and_evaluate(jaxvae.Config(epochs=5), "runs/first")
  rows = jaxvae.run_sweep([jaxvae.Config(beta=b) for b in (0.5, 1, 2)], "runs/beta")
  jaxvae.evaluate_run("runs/first", k=5000)     # log p(x) by importance sampling
  jaxvae.inference_gaps("runs/first")           # amortization and approximation gaps

Your own pieces are values handed to those calls::

  VAE.from_modules(encoder, decoder, ...)  a model from two Flax Linen or NNX modules, Equinox modules
                                           or (init, apply) pairs, a Likelihood, a Prior, a Posterior
  Objective(name, loss, hparams)           a training objective (beta_elbo, iwae, iwae_dreg built in)
  Dataset.from_arrays(train, test)         data; load_mnist, load_npz, load_npy, load_folder, load_dataset
  Callback, tensorboard(), wandb()         what a run calls after each epoch

The maths, as pure functions: elbo, importance_terms, iwae_bound, importance_sampled_log_px,
Gaussian, gaussian_sample, gaussian_log_prob, gaussian_kl, bernoulli_log_prob; the training step:
make_trainer -> Trainer(init, train_step, ...) over a TrainState pytree.

Modules: likelihoods, priors, posteriors, objectives, distributions, networks, nets, flows (IAF),
ladder (the Ladder VAE), callbacks, writers; the layers are the folders core, training, watch,
runs and tools, each importing only the ones before it. Every name has its page in the
documentation site (docs/, built with Sphinx), with tutorials to run.
"""

import sys as _sys

from jaxvae.core import (
  distributions as distributions,
  flows as flows,
  ladder as ladder,
  likelihoods as likelihoods,
  nets as nets,
  networks as networks,
  objectives as objectives,
  posteriors as posteriors,
  priors as priors,
)
from jaxvae.core.data import (
  Dataset as Dataset,
  dynamic_binarize as dynamic_binarize,
  static_binarize as static_binarize,
)
from jaxvae.core.distributions import (
  Gaussian as Gaussian,
  bernoulli_log_prob as bernoulli_log_prob,
  gaussian_kl as gaussian_kl,
  gaussian_kl_to_standard_normal as gaussian_kl_to_standard_normal,
  gaussian_log_prob as gaussian_log_prob,
  gaussian_sample as gaussian_sample,
  standard_normal_log_prob as standard_normal_log_prob,
)
from jaxvae.core.estimators import (
  importance_sampled_log_px as importance_sampled_log_px,
)
from jaxvae.core.likelihoods import (
  Likelihood as Likelihood,
)
from jaxvae.core.model import (
  VAE as VAE,
)
from jaxvae.core.networks import (
  Network as Network,
  as_network as as_network,
)
from jaxvae.core.objectives import (
  ELBOTerms as ELBOTerms,
  ImportanceTerms as ImportanceTerms,
  Objective as Objective,
  beta_elbo_loss as beta_elbo_loss,
  elbo as elbo,
  importance_terms as importance_terms,
  iwae_bound as iwae_bound,
  kl_warmup as kl_warmup,
)
from jaxvae.core.posteriors import (
  Posterior as Posterior,
)
from jaxvae.core.priors import (
  Prior as Prior,
)
from jaxvae.errors import (
  JaxvaeError as JaxvaeError,
  RunStopped as RunStopped,
  UserCodeError as UserCodeError,
)
from jaxvae.runs.config import (
  Config as Config,
)
from jaxvae.runs.evaluate import (
  evaluate_run as evaluate_run,
  inference_gaps as inference_gaps,
)
from jaxvae.runs.run import (
  train_and_evaluate as train_and_evaluate,
)
from jaxvae.runs.sources import (
  load_dataset as load_dataset,
  load_folder as load_folder,
  load_mnist as load_mnist,
  load_npy as load_npy,
  load_npz as load_npz,
)
from jaxvae.runs.sweep import (
  run_sweep as run_sweep,
  train_group as train_group,
)
from jaxvae.training.train import (
  EMA as EMA,
  Trainer as Trainer,
  TrainState as TrainState,
  make_trainer as make_trainer,
)
from jaxvae.watch import (
  callbacks as callbacks,
  writers as writers,
)
from jaxvae.watch.callbacks import (
  Callback as Callback,
)
from jaxvae.watch.writers import (
  tensorboard as tensorboard,
  wandb as wandb,
)

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
del _module
