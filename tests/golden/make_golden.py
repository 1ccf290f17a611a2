"""Writes golden_metrics.json: what the built-in models train to, per epoch, on a tiny budget.

The file was written by this script at commit aec1679 (before the open core of issue 13; the
keyword was ``dataset=`` there, ``data=`` since), and tests/test_golden.py checks that the same
configs still train to the same values: the built-in models, now built through the public
extension points, are the models they were.

  python tests/golden/make_golden.py tests/golden/golden_metrics.json
"""

import json
import sys
import tempfile

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


def main(path):
  mnist = load_mnist()
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name, fields in CASES.items():
      config = Config(**TINY, **fields)
      train_and_evaluate(config, f"{tmp}/{name}", data=mnist, progress=False, verbose=False)
      with open(f"{tmp}/{name}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
      out[name] = {"config": fields, "rows": [{k: v for k, v in r.items() if k not in TIMING} for r in rows]}
      if name in EVALUATED:
        ev = evaluate_run(f"{tmp}/{name}", k=20, batch_size=16, n_test=32, progress=False, write=False)
        out[name]["eval"] = {k: v for k, v in ev.items() if k not in TIMING}
      print(name, rows[-1]["test_elbo"], flush=True)
  with open(path, "w") as f:
    json.dump({"tiny": TINY, "cases": out}, f, indent=1, sort_keys=True)
    f.write("\n")


if __name__ == "__main__":
  main(sys.argv[1])
