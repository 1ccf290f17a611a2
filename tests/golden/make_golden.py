"""Writes golden_metrics.json: what the built-in models train to, per epoch, on a tiny budget.

The file was written by this script at commit aec1679 (before the open core of issue 13; the
keyword was ``dataset=`` there, ``data=`` since), and tests/test_golden.py checks that the same
configs still train to the same values: the built-in models, now built through the public
extension points, are the models they were.

  python tests/golden/make_golden.py tests/golden/golden_metrics.json

Float32 rounding is not the same everywhere: another jaxlib, or another CPU (XLA compiles for
the host's vector instructions: AVX-512 or AVX2, fused multiply-adds or not), rounds some
operations differently, and training carries a difference of rounding forward. So the file
also holds each case's rounding scale, written (without touching the values) by

  python tests/golden/make_golden.py --rounding tests/golden/golden_metrics.json

which trains each case twice more, its initial parameters moved one float32 ulp up and then
down, and records for every value the largest change that caused: how far a difference of
rounding moves that value. tests/test_golden.py allows a value to move by a multiple of it.
"""

import json
import sys
import tempfile

import jax
import numpy as np

from jaxvae.runs.build import make_vae
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import evaluate_run
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sources import load_mnist

TIMING = ("images_per_sec", "seconds", "samples_per_sec")
EVALUATED = ("mlp", "conv", "burda2_iwae_k3", "logistic_mixture", "vamp_prior")
TINY = dict(n_train=256, n_test=64, batch_size=32, epochs=2)
CASES = {
  "mlp": dict(hidden=(32,), latent_dim=4),
  "mlp_k3_mc_kl": dict(hidden=(32,), latent_dim=4, k=3, kl="mc"),
  "mlp_beta_warmup_free_bits": dict(hidden=(32,), latent_dim=4, beta=2.0, warmup_epochs=1.5, free_bits=0.2),
  "mlp_static_clip_burda_lr": dict(
    hidden=(32,), latent_dim=4, binarization="static", clip_grad_norm=5.0, lr_schedule="burda", adam_eps=1e-4
  ),
  "conv": dict(net="conv", conv_channels=(4, 8), latent_dim=4),
  "burda1_iwae_k5": dict(model="burda1", objective="iwae", k=5),
  "burda2_vae": dict(model="burda2", hidden=(32,), latent_dim=8, hidden2=(16,), latent_dim2=4),
  "burda2_iwae_k3": dict(
    model="burda2", hidden=(32,), latent_dim=8, hidden2=(16,), latent_dim2=4, objective="iwae", k=3
  ),
  "gaussian_per_pixel": dict(hidden=(32,), latent_dim=4, likelihood="gaussian", gaussian_scale="per-pixel"),
  "gaussian_fixed": dict(hidden=(32,), latent_dim=4, likelihood="gaussian", gaussian_scale="fixed"),
  "logistic_mixture": dict(hidden=(32,), latent_dim=4, likelihood="discretized-logistic", mixtures=3),
  "mog_prior": dict(hidden=(32,), latent_dim=4, prior="mog", prior_components=5),
  "vamp_prior": dict(hidden=(32,), latent_dim=4, prior="vamp", prior_components=8, warmup_epochs=1.0),
}


MNIST_SHAPE = (28, 28, 1)


def run_case(name, mnist, folder, nudge: int = 0):
  """The metrics rows (and, for EVALUATED cases, eval results) of one case; ``nudge`` = +1 or -1 moves every
  initial parameter one float32 ulp up or down."""
  config, model = Config(**TINY, **CASES[name]), None
  if nudge:
    vae = make_vae(config, MNIST_SHAPE)
    step = lambda p: np.nextafter(np.asarray(p), np.asarray(nudge * np.inf, np.asarray(p).dtype))  # noqa: E731
    model = vae._replace(init=lambda key, data=None: jax.tree.map(step, vae.init(key, data)))
  train_and_evaluate(config, folder, model=model, data=mnist, progress=False, verbose=False)
  with open(f"{folder}/metrics.jsonl") as f:
    rows = [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]
  ev = None
  if name in EVALUATED:
    ev = evaluate_run(folder, k=20, batch_size=16, n_test=32, progress=False, write=False, model=model, data=mnist)
    ev = {k: v for k, v in ev.items() if k not in TIMING}
  return rows, ev


def _spread(nominal, others) -> dict:
  """The largest absolute change of each numeric value over the nudged runs (rows: over the epochs too)."""
  out = {}
  for other in others:
    for key, value in nominal.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[key] = max(out.get(key, 0.0), abs(float(other[key]) - float(value)))
  return out


def rounding(path):
  """Adds each case's rounding scale to the golden file at ``path`` (its values stay as they are)."""
  with open(path) as f:
    golden = json.load(f)
  mnist = load_mnist()
  with tempfile.TemporaryDirectory() as tmp:
    for name in CASES:
      nominal_rows, nominal_eval = run_case(name, mnist, f"{tmp}/{name}")
      nudged = [run_case(name, mnist, f"{tmp}/{name}{n}", nudge=n) for n in (1, -1)]
      rows = {}
      for epoch, row in enumerate(nominal_rows):
        for key, value in _spread(row, [r[epoch] for r, _ in nudged]).items():
          rows[key] = max(rows.get(key, 0.0), value)
      golden["cases"][name]["rounding"] = {"rows": rows}
      if nominal_eval is not None:
        golden["cases"][name]["rounding"]["eval"] = _spread(nominal_eval, [e for _, e in nudged])
      print(name, {k: f"{v:.2g}" for k, v in rows.items() if v}, flush=True)
  golden["rounding_written_with"] = {"jax": jax.__version__, "cpu": _cpu()}
  with open(path, "w") as f:
    json.dump(golden, f, indent=1, sort_keys=True)
    f.write("\n")


def _cpu() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
  except OSError:
    return "unknown"
  model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
  flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
  return f"{model} ({', '.join(f for f in ('avx512f', 'avx2', 'fma') if f in flags)})"


def main(path):
  mnist = load_mnist()
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name, fields in CASES.items():
      rows, ev = run_case(name, mnist, f"{tmp}/{name}")
      out[name] = {"config": fields, "rows": rows}
      if ev is not None:
        out[name]["eval"] = ev
      print(name, rows[-1]["test_elbo"], flush=True)
  with open(path, "w") as f:
    json.dump({"tiny": TINY, "cases": out}, f, indent=1, sort_keys=True)
    f.write("\n")


if __name__ == "__main__":
  rounding(sys.argv[2]) if sys.argv[1] == "--rounding" else main(sys.argv[1])
