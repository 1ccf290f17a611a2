"""The built-in models, now built through the public path, train to the numbers of the commit before.

``golden/golden_metrics.json`` was written by ``golden/make_golden.py`` at commit aec1679, before
the open core (issue 13): every epoch's metrics of 13 tiny runs (each built-in model, likelihood,
prior, objective and optimizer option) and, for five of them, ``jaxvae eval``'s results. The
same configs must train to the same values now. Two differences are by design:

* burda2's four networks are initialised from other keys (``VAE.from_modules`` splits the
  init key as (encoder, decoder, prior) and folds in the posterior's): started from the old
  keys, it trains to the old numbers exactly, which is what the test checks;
* with ``kl="mc"`` the test set's single-sample ELBO folds the sample axis into the batch axis
  before the decoder, which changes float32 rounding (relative 1e-7); hence rtol 1e-6.
"""

import json
import os

import jax
import numpy as np
import pytest
from helpers import MNIST_SHAPE

from jaxvae.core.nets import GaussianMLP, MLPDecoder, MLPEncoder
from jaxvae.runs.build import make_vae
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run
from jaxvae.runs.folder import read_metrics
from jaxvae.runs.records import TIMING_KEYS
from jaxvae.runs.run import train_and_evaluate

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "golden_metrics.json")
with open(GOLDEN) as f:
  _golden = json.load(f)
TINY, CASES = _golden["tiny"], _golden["cases"]


def _old_burda2_init(config, vae):
  """burda2's initialisation before the open core: ``split(key, 4)`` as q(z1|x), q(z2|z1), p(z1|z2), p(x|z1)."""
  act, d1, d2 = config.activation, config.latent_dim, config.latent_dim2
  modules = {
    "encoder": (MLPEncoder(config.hidden, d1, act), MNIST_SHAPE),
    "posterior": (GaussianMLP(config.hidden2, d2, act), (d1,)),
    "prior": (GaussianMLP(config.hidden2[::-1], d1, act), (d2,)),
    "decoder": (MLPDecoder(config.hidden[::-1], MNIST_SHAPE, act), (d1,)),
  }

  def init(key, data=None):
    keys = jax.random.split(key, 4)
    return {
      name: module.init(k, jax.numpy.zeros((1,) + shape))["params"]
      for k, (name, (module, shape)) in zip(keys, modules.items())
    }

  return vae._replace(init=init)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_built_in_model_trains_to_the_numbers_of_the_commit_before(name, tmp_path, mnist):
  case = CASES[name]
  config = Config(**TINY, **case["config"])
  model = None
  if config.model == "burda2":
    model = _old_burda2_init(config, make_vae(config, MNIST_SHAPE))
  workdir = str(tmp_path / name)
  train_and_evaluate(config, workdir, model=model, data=mnist, progress=False, verbose=False)
  rows = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(workdir)]
  assert [sorted(r) for r in rows] == [sorted(r) for r in case["rows"]]
  for row, old in zip(rows, case["rows"]):
    for key, value in old.items():
      np.testing.assert_allclose(row[key], value, rtol=1e-6, err_msg=f"{name} epoch {old['epoch']} {key}")
  if "eval" in case:
    new = evaluate_run(workdir, k=20, batch_size=16, n_test=32, progress=False, write=False, model=model, data=mnist)
    for key, value in case["eval"].items():
      np.testing.assert_allclose(new[key], value, rtol=1e-6, err_msg=f"{name} eval {key}")
