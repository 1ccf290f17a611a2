"""Where the time of a training step goes: a jax.profiler trace of the scanned epoch, by kernel.

  python benchmarks/profile_step.py [--steps 100] [--top 25]

Runs 100 steps of the default model under ``jax.profiler.trace`` (a Perfetto trace in a
temporary folder), then prints, per step, the wall time, the time during which no kernel ran,
the time of each kind of kernel (large matmuls, small matmuls, elementwise work on
parameter-sized arrays, i.e. Adam, and the rest), and the top kernels with the JAX operation
they come from. Kernels can run concurrently, so the kinds may sum to more than the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

import jax

from jaxvae.runs.build import trainer_for
from jaxvae.runs.config import Config
from jaxvae.runs.sources import load_mnist


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  config = Config()
  images = jax.device_put(load_mnist().train[: config.batch_size * args.steps])
  trainer = trainer_for(config, data_shape=images.shape[1:], train_size=60_000)
  state = trainer.init(jax.random.key(0))
  epoch = trainer.train_epoch.compile(state, images, jax.random.key(1)).compiled
  state, metrics = epoch(state, images, jax.random.key(1))
  jax.block_until_ready(metrics)
  folder = tempfile.mkdtemp(prefix="jaxvae-profile-")
  with jax.profiler.trace(folder, create_perfetto_trace=True):
    state, metrics = epoch(state, images, jax.random.key(2))
    jax.block_until_ready(metrics)
  with gzip.open(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace

  hlo = epoch.as_text()
  shapes, ops = {}, {}
  for line in hlo.splitlines():
    m = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+)", line)
    if m:
      shapes[m.group(1)] = m.group(2)
      op = re.search(r'op_name="([^"]+)"', line)
      ops[m.group(1)] = op.group(1).split("/")[-1] if op else ""

  kernels = [e for e in events if e.get("ph") == "X" and e["name"] in shapes]
  kernels.sort(key=lambda e: e["ts"])
  span = kernels[-1]["ts"] + kernels[-1]["dur"] - kernels[0]["ts"]
  busy, end = 0.0, None
  for e in kernels:
    a, b = e["ts"], e["ts"] + e["dur"]
    if end is None or a > end:
      busy += b - a
      end = b
    elif b > end:
      busy += b - end
      end = b
  big = ("[128,400]", "[128,784]", "[400,784]", "[784,400]")
  kinds, per_kernel = collections.Counter(), collections.Counter()
  for e in kernels:
    name, shape = e["name"], shapes[e["name"]]
    if name.startswith(("ynn_fusion", "dot")):
      kind = "large matmuls" if any(s in shape for s in big) else "small matmuls"
    elif any(s in shape for s in ("[400,784]", "[784,400]")):
      kind = "parameter-sized elementwise (Adam)"
    else:
      kind = "other kernels"
    kinds[kind] += e["dur"]
    per_kernel[name] += e["dur"]
  n = args.steps
  print(f"per step of {config.batch_size} images ({jax.devices()[0].device_kind}):")
  print(f"  wall {span / n:8.1f} us   no kernel running {(span - busy) / n:8.1f} us")
  for kind, t in kinds.most_common():
    print(f"  {kind:38s} {t / n:8.1f} us")
  print(f"top {args.top} kernels (us per step, shape, JAX operation):")
  for name, t in per_kernel.most_common(args.top):
    print(f"  {t / n:8.1f}  {name:28s} {shapes[name]:24s} {ops[name]}")


if __name__ == "__main__":
  main()
