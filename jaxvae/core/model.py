"""The VAE as pure functions named after the papers' symbols, built from networks of any JAX library.

================  ====================================  ==========================
symbol            meaning                               function
================  ====================================  ==========================
p(z)              the prior                             ``vae.log_p_z``, ``vae.sample_p_z``
p_theta(x|z)      the likelihood (decoder)              ``vae.p_theta`` (its parameters),
                                                        ``vae.log_p_x_given_z`` (its log-density)
q_phi(z|x)        the approximate posterior (encoder)   ``vae.q_phi`` (its Gaussian),
                                                        ``vae.sample_q`` (z and log q_phi(z|x)),
                                                        ``vae.log_q`` (log q_phi(z|x) of a given z)
KL(q_phi || p)    the KL to the prior, in closed form   ``vae.kl_q_p_z`` (per dimension)
================  ====================================  ==========================

The encoder is "amortized": one network q_phi serves every x, instead of one set of
variational parameters per data point. The ELBO that ties them together is in
:mod:`jaxvae.core.objectives`.

:meth:`VAE.from_modules` builds a VAE from two networks (Flax Linen or NNX modules, Equinox
modules, or pairs of pure functions: :mod:`jaxvae.core.networks`) and three values: the
likelihood (:mod:`jaxvae.core.likelihoods`), the prior (:mod:`jaxvae.core.priors`) and the posterior
family (:mod:`jaxvae.core.posteriors`). jaxvae's own models are built this way
(:mod:`jaxvae.runs.build`): MLP or conv nets with one stochastic layer, and Burda et al.'s
two-layer model, whose prior p(z2) p(z1|z2) and posterior q(z1|x) q(z2|z1) are values too.

Example:
  >>> vae = VAE.from_modules(MLPEncoder((400,), 20), MLPDecoder((400,), (28, 28, 1)),
  ...                        data_shape=(28, 28, 1), latent_dim=20)
  >>> params = vae.init(jax.random.key(0))
  >>> q = vae.q_phi(params, x)              # q_phi(z|x): Gaussian, [B, 20]
  >>> z = gaussian_sample(key, q)           # z ~ q_phi(z|x), reparameterized
  >>> logits = vae.p_theta(params, z)       # p_theta(x|z): Bernoulli logits, [B, 28, 28, 1]
  >>> vae.log_p_x_given_z(x, logits)        # [B] nats
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxvae.core import distributions as D, likelihoods as L, posteriors, priors as P
from jaxvae.core.networks import Network, as_network
from jaxvae.core.registry import Registry

Params = Any  # a pytree: {"encoder": ..., "decoder": ..., "prior": ..., "posterior": ..., "likelihood": ...}
Latent = posteriors.Latent
#: The built-in models by the names ``--model`` accepts: :mod:`jaxvae.core.vaes` (mlp, burda1, burda2),
#: :mod:`jaxvae.core.ladder` (ladder) and :mod:`jaxvae.core.vdvae` (vdvae) register theirs, as factories
#: ``(config, data_shape, dtype) -> VAE``.
MODELS = Registry("model")


STATE = "state"  # params["state"][network]: what networks update themselves in training (running statistics)


def trainable(params: Params) -> Params:
  """The parameters the optimizer trains: ``params`` without the networks' own state (``params["state"]``)."""
  return {k: v for k, v in params.items() if k != STATE} if STATE in params else params


def with_state(params: Params, state: dict[str, Any]) -> Params:
  """``params`` with the networks' state ``state`` (none if empty): the inverse of :func:`trainable`."""
  return {**params, STATE: state} if state else params


def _network_state(params: Params, name: str) -> Any:
  return params.get(STATE, {}).get(name, {})


def _flat_apply(fn: Callable[[jax.Array], Any], inputs: jax.Array, event_ndim: int) -> Any:
  """Applies ``fn`` to ``inputs [*lead, *event]`` as one batch ``[prod(lead), *event]``, then restores ``lead``."""
  lead = inputs.shape[: inputs.ndim - event_ndim]
  if len(lead) == 1:
    return fn(inputs)
  out = fn(inputs.reshape((math.prod(lead),) + inputs.shape[len(lead) :]))
  return jax.tree.map(lambda o: o.reshape(lead + o.shape[1:]), out)


class _Training:
  """The networks' calls of one training step: dropout keys from ``key``, and each network's new state.

  Each call draws its key as ``fold_in(key, i)`` for the i-th call of the step; a network's
  first call in the step gives its new state (its statistics of this step's batch).
  """

  def __init__(self, key: jax.Array):
    self.key, self.calls, self.state = key, 0, {}

  def __call__(self, name: str, network: Network, params: Params, x: jax.Array) -> Any:
    key = jax.random.fold_in(self.key, self.calls)
    self.calls += 1
    out, state = network.apply(params[name], _network_state(params, name), x, train=True, key=key)
    if state:
      self.state.setdefault(name, state)
    return out


def _evaluating(name: str, network: Network, params: Params, x: jax.Array) -> Any:
  return network.apply(params[name], _network_state(params, name), x)[0]


def _likelihood(value: str | L.Likelihood, data_shape: tuple[int, ...]) -> L.Likelihood:
  """A likelihood value as it is, or a registered one by name with its defaults."""
  return value if isinstance(value, L.Likelihood) else L.LIKELIHOODS.build(value, data_shape=data_shape)


def _prior(value: str | P.Prior, latent_dim: int, encoder: Any, data_shape, likelihood: L.Likelihood) -> P.Prior:
  """A prior value as it is, or a registered one by name with its defaults."""
  if isinstance(value, P.Prior):
    return value
  return P.PRIORS.build(value, latent_dim=latent_dim, encoder=encoder, data_shape=data_shape, likelihood=likelihood)


class VAE(NamedTuple):
  """A variational autoencoder as a NamedTuple of pure functions (build one with :meth:`from_modules`).

  Attributes:
    init: ``(key, data=None) -> params``; ``data`` (the stored training data ``[N, ...]``)
      initialises the VampPrior's pseudo-inputs and is ignored otherwise.
    q_phi: ``(params, x [B, *data_shape]) -> Gaussian [B, d]``: the encoder, the amortized
      approximate posterior q_phi(z|x) (its first layer, q_phi(z1|x), if there are several).
    sample_q: ``(params, x [B, ...], key, sample_shape) -> (z, log q_phi(z|x))``:
      reparameterized draws of every stochastic layer, ``[*sample_shape, B, ...]``,
      and their log-density ``[*sample_shape, B]``.
    log_q: ``(params, x [B, ...], z [*S, B, ...]) -> [*S, B]``: log q_phi(z|x) of given z.
    p_theta: ``(params, z [..., d]) -> the parameters of p_theta(x|z)``: the decoder (Bernoulli
      logits ``[..., *data_shape]``, a Gaussian, or a logistic mixture; see :mod:`jaxvae.core.likelihoods`).
    log_p_x_given_z: ``(x, p_theta output) -> [...]``: log p_theta(x|z), summed over the
      event axes; ``x`` has the output's leading shape.
    mean_x: ``p_theta output -> [..., *data_shape]``: E[x|z], the image a decoder shows.
    log_p_z: ``(params, z) -> [...]``: the prior log p(z) of the whole latent.
    sample_p_z: ``(params, key, n) -> z``: z ~ p(z), ``[n, ...]``.
    kl_q_p_z: ``(params, q) -> [..., d]``: KL(q_phi(z|x) || p(z)) in closed form,
      per latent dimension (the KL is their sum), or None where there is none.
    latent_means: ``(params, x, key) -> tuple of [B, d_l]``: E_q[z_l|x] per
      stochastic layer (Monte Carlo above the first), for counting active units.
    latent_dim: d (of z1).
    data_shape: the shape of one example x, e.g. (28, 28, 1) or (2,).
    likelihood: the :class:`jaxvae.core.likelihoods.Likelihood` (how stored data become x, ...).
    encode: ``(params, x [B, ...]) -> h``: the encoder's raw output, which the posterior turns
      into q_phi(z|x) (for the Gaussian posterior, the Gaussian itself).
    posterior: the :class:`jaxvae.core.posteriors.Posterior` (how h becomes q_phi(z|x)).
    sample_kl: ``(params, x, key, sample_shape) -> (z, per-layer KL [*S, B, d_l] ...)``, the
      posterior's layer-wise closed-form KL (:attr:`jaxvae.Posterior.sample_kl`), or None.
    host_loop_on_cpu: on a CPU, train an epoch as a host loop of jitted steps instead of one
      ``lax.scan`` (:class:`jaxvae.training.train.Epoch`): for models with convolutions, whose
      gradients XLA's CPU backend computes about 20 times more slowly inside a loop.
    training: ``key -> (vae, new_state)``, or None where no network behaves differently in
      training: the same model with its networks in training mode (dropout drawn from ``key``,
      batch statistics), and a function that returns, once the step's loss has been traced,
      each network's updated state ``{name: state}`` (:func:`jaxvae.training.train.make_train_step`).
      Every other function of a VAE runs the networks in evaluation mode. The new state is
      recorded as the loss is traced, so an objective calls the networks at its own level, not
      inside a ``jax.vmap`` or ``lax.scan`` of its own (fold sample axes into the batch instead,
      as ``vae.sample_q`` and ``vae.p_theta`` do).
    networks: ``{"encoder": Network, "decoder": Network}``
      (:class:`jaxvae.core.networks.Network`), which the checks before a run trace one by one.
  """

  init: Callable[..., Params]
  q_phi: Callable[[Params, jax.Array], D.Gaussian]
  sample_q: Callable[[Params, jax.Array, jax.Array, tuple[int, ...]], tuple[Latent, jax.Array]]
  log_q: Callable[[Params, jax.Array, Latent], jax.Array]
  p_theta: Callable[[Params, Latent], Any]
  log_p_x_given_z: Callable[[jax.Array, Any], jax.Array]
  mean_x: Callable[[Any], jax.Array]
  log_p_z: Callable[[Params, Latent], jax.Array]
  sample_p_z: Callable[[Params, jax.Array, int], Latent]
  kl_q_p_z: Callable[[Params, D.Gaussian], jax.Array] | None
  latent_means: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, ...]]
  latent_dim: int
  data_shape: tuple[int, ...]
  likelihood: L.Likelihood
  encode: Callable[[Params, jax.Array], Any] | None = None
  posterior: posteriors.Posterior | None = None
  sample_kl: Callable[..., tuple[Latent, tuple[jax.Array, ...]]] | None = None
  host_loop_on_cpu: bool = False
  training: Callable[[jax.Array], tuple[VAE, Callable[[], dict[str, Any]]]] | None = None
  networks: dict[str, Network] | None = None

  @classmethod
  def from_modules(
    cls,
    encoder: Any,
    decoder: Any,
    *,
    data_shape: tuple[int, ...],
    latent_dim: int,
    likelihood: str | L.Likelihood = "bernoulli",
    prior: str | P.Prior = "normal",
    posterior: posteriors.Posterior | None = None,
    host_loop_on_cpu: bool = False,
  ) -> VAE:
    """A VAE from two networks, a likelihood, a prior and a posterior family.

    The networks see one batch axis (an Equinox module sees one example at a time, vmapped): the
    encoder maps x ``[B, *data_shape]`` to the posterior's
    input h (for the default Gaussian posterior, a :class:`jaxvae.Gaussian` of ``[B, d]``
    fields: mean and log sigma); the decoder maps z ``[B, d]`` (z1, the layer next to x, if
    the latent has several) to the likelihood's raw output ``[B, *likelihood.output_shape]``.
    Leading sample axes are folded into the batch axis around each call.

    Parameters: ``params["encoder"]``, ``params["decoder"]``, and where they have any,
    ``params["prior"]``, ``params["posterior"]``, ``params["likelihood"]``, and the networks'
    own state (running statistics), which the optimizer does not train, in
    ``params["state"]["encoder"]`` and ``params["state"]["decoder"]``. ``init(key)``
    splits ``key`` into the encoder's, the decoder's and the prior's keys
    (``jax.random.split(key, 3)``); the posterior's is ``fold_in(key, 3)``.

    Args:
      encoder: the network of q_phi(z|x): a Flax Linen or NNX module, an Equinox module, or a
        pair ``(init, apply)`` (:func:`jaxvae.core.networks.as_network`).
      decoder: the network of p_theta(x|z), of the same kinds.
      data_shape: the shape of one example x, e.g. (28, 28, 1) or (2,).
      latent_dim: d, the size of z (of z1 if there are several layers).
      likelihood: a name registered in :data:`jaxvae.core.likelihoods.LIKELIHOODS` (``"bernoulli"``,
        ``"gaussian"``, ...; with its defaults) or a :class:`jaxvae.core.likelihoods.Likelihood`.
      prior: a name registered in :data:`jaxvae.core.priors.PRIORS` (``"normal"``, ``"mog"``,
        ``"vamp"``; with its defaults) or a :class:`jaxvae.core.priors.Prior`.
      posterior: a :class:`jaxvae.core.posteriors.Posterior` (default: the diagonal Gaussian).
      host_loop_on_cpu: the modules have convolutions: on a CPU, an epoch is a host loop of
        jitted steps rather than one scan (see :attr:`VAE.host_loop_on_cpu`).

    Returns:
      A :class:`VAE`.

    Example:
      >>> class Encoder(nn.Module):
      ...   @nn.compact
      ...   def __call__(self, x):            # x: [B, 28, 28, 1]
      ...     h = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
      ...     return jaxvae.Gaussian(nn.Dense(8)(h), nn.Dense(8)(h))
      >>> vae = jaxvae.VAE.from_modules(Encoder(), Decoder(), data_shape=(28, 28, 1), latent_dim=8)
    """
    data_shape = tuple(int(s) for s in data_shape)
    networks = {"encoder": as_network(encoder, "encoder"), "decoder": as_network(decoder, "decoder")}
    likelihood = _likelihood(likelihood, data_shape)
    prior = _prior(prior, latent_dim, encoder, data_shape, likelihood)
    posterior = posterior or posteriors.diagonal_gaussian()
    event_ndim = len(data_shape)

    def init(key: jax.Array, data: jax.Array | None = None) -> Params:
      k_enc, k_dec, k_prior = jax.random.split(key, 3)
      params, state = {}, {}
      for name, k, x0 in (
        ("encoder", k_enc, jnp.zeros((1,) + data_shape)),
        ("decoder", k_dec, jnp.zeros((1, latent_dim))),
      ):
        params[name], state[name] = networks[name].init(k, x0)
      own = (
        ("prior", prior.init(k_prior, data)),
        ("posterior", posterior.init(jax.random.fold_in(key, 3))),
        ("likelihood", likelihood.init()),
        (STATE, {name: s for name, s in state.items() if s}),
      )
      for name, value in own:
        if value:  # no empty subtrees: N(0, I), the Gaussian posterior and the Bernoulli have no parameters
          params[name] = value
      return params

    def assemble(call: Callable[[str, Network, Params, jax.Array], Any]) -> VAE:
      """The VAE whose networks run through ``call``: in evaluation, or in a training step."""

      def encode(params: Params, x: jax.Array):
        return _flat_apply(lambda xb: call("encoder", networks["encoder"], params, xb), x, event_ndim)

      def q_phi(params: Params, x: jax.Array) -> D.Gaussian:
        return posterior.gaussian(params, encode(params, x))

      def sample_q(params: Params, x: jax.Array, key: jax.Array, sample_shape: tuple[int, ...] = ()):
        return posterior.sample(params, encode(params, x), key, sample_shape)

      def log_q(params: Params, x: jax.Array, z) -> jax.Array:
        return posterior.log_prob(params, encode(params, x), z)

      def p_theta(params: Params, z):
        z1 = z[0] if isinstance(z, (tuple, list)) else z
        raw = _flat_apply(lambda zb: call("decoder", networks["decoder"], params, zb), z1, 1)
        return likelihood.outputs(params.get("likelihood", {}), raw)

      def latent_means(params: Params, x: jax.Array, key: jax.Array) -> tuple[jax.Array, ...]:
        return posterior.means(params, encode(params, x), key)

      def sample_kl(params: Params, x: jax.Array, key: jax.Array, sample_shape: tuple[int, ...] = ()):
        return posterior.sample_kl(params, encode(params, x), key, sample_shape)

      kl = prior.kl_per_dim if posterior.closed_form and prior.kl_per_dim is not None else None
      return cls(
        init=init,
        q_phi=q_phi,
        sample_q=sample_q,
        log_q=log_q,
        p_theta=p_theta,
        log_p_x_given_z=likelihood.log_prob,
        mean_x=likelihood.mean,
        log_p_z=prior.log_prob,
        sample_p_z=prior.sample,
        kl_q_p_z=kl,
        latent_means=latent_means,
        latent_dim=latent_dim,
        data_shape=data_shape,
        likelihood=likelihood,
        encode=encode,
        posterior=posterior,
        sample_kl=sample_kl if posterior.sample_kl is not None else None,
        host_loop_on_cpu=host_loop_on_cpu,
        training=training if any(n.modal for n in networks.values()) else None,
        networks=networks,
      )

    def training(key: jax.Array) -> tuple[VAE, Callable[[], dict[str, Any]]]:
      calls = _Training(key)
      return assemble(calls), lambda: calls.state

    return assemble(_evaluating)
