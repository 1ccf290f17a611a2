"""Evaluation throughput: importance-sampled log p(x) estimates, in samples of z per second.

  python benchmarks/eval_throughput.py [--model mlp|burda1|burda2] [--k 5000] [--n-test 500] [--quick]

Runs the evaluator that `jaxvae eval` runs (``jaxvae.core.estimators.make_batch_evaluator``: k samples
z ~ q_phi(z|x) per test image, drawn in chunks, log-weights combined with a running maximum)
on the first ``--n-test`` test images, after one warm-up batch that compiles it. The model's
parameters are freshly initialised: the cost does not depend on their values. Prints samples/s,
test images/s at this k, and the projected time of the full 10,000-image, k = 5000 evaluation;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from jaxvae.core.estimators import make_batch_evaluator
from jaxvae.runs.config import Config
from jaxvae.runs.setup import prepare_model
from jaxvae.runs.sources import load_mnist


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mlp", choices=["mlp", "burda1", "burda2"])
  parser.add_argument("--k", type=int, default=5000)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--n-test", type=int, default=500)
  parser.add_argument("--quick", action="store_true", help="k = 1000 on 200 images")
  args = parser.parse_args(argv)
  if args.quick:
    args.k, args.n_test = 1000, 200
  config = Config(model=args.model)
  dataset = load_mnist()
  setup = prepare_model(config.replace(n_test=args.n_test), data=dataset)
  test = jnp.asarray(setup.test_x)
  vae = setup.vae
  params = vae.init(jax.random.key(0))
  b = min(args.batch_size, args.n_test)
  chunk = max(1, min(args.k, 50_000 // b))
  evaluate_batch = make_batch_evaluator(vae, args.k, chunk)

  t0 = time.perf_counter()
  jax.block_until_ready(evaluate_batch(params, test[:b], jax.random.key(0)))
  compile_and_first = time.perf_counter() - t0
  batches = args.n_test // b
  t0 = time.perf_counter()
  for i in range(batches):
    out = evaluate_batch(params, test[i * b : (i + 1) * b], jax.random.key(i + 1))
  jax.block_until_ready(out)
  seconds = time.perf_counter() - t0
  samples = batches * b * args.k
  rate = samples / seconds
  print(
    f"model {args.model}, k = {args.k} (chunks of {chunk}), batch {b}, {batches * b} test images on "
    f"{jax.devices()[0].device_kind}: {rate:,.0f} samples of z/s, {batches * b / seconds:,.1f} images/s; "
    f"first batch with compilation {compile_and_first:.1f} s; the full test set at k = 5000 would take "
    f"{10_000 * 5000 / rate / 60:.1f} min"
  )
  print(
    json.dumps(
      {
        "model": args.model,
        "k": args.k,
        "batch_size": b,
        "n_test": batches * b,
        "eval_samples_per_sec": round(rate, 1),
        "eval_images_per_sec": round(batches * b / seconds, 3),
        "projected_full_eval_minutes": round(10_000 * 5000 / rate / 60, 2),
      }
    )
  )


if __name__ == "__main__":
  main()
