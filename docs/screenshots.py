"""Screenshots of a sweep in TensorBoard, taken with headless Chromium, for the README.

  python docs/screenshots.py [--out docs/images] [--epochs 10]

Trains a small sweep (beta = 0.5, 1, 2) with `jaxvae sweep`, serves its folder with
`tensorboard --logdir` on 127.0.0.1 and saves the page as the browser draws it:
``tensorboard_scalars.png`` (the ELBO curves of the three models), ``tensorboard_images.png``
(their samples and reconstructions) and ``tensorboard_hparams.png`` (the HParams dashboard). Needs the
`tensorboard` package and a Chromium (Debian: `apt install chromium`); no network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from jaxvae.tools.launch import free_port


def browser() -> str:
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  raise SystemExit("docs/screenshots.py: no Chromium found: apt install chromium")


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "images"))
  ap.add_argument("--epochs", type=int, default=10)
  args = ap.parse_args()
  chromium = browser()
  os.makedirs(args.out, exist_ok=True)
  folder = tempfile.mkdtemp(prefix="jaxvae-screenshots-")
  sweep = os.path.join(folder, "beta-sweep")
  subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxvae.tools.cli",
      "sweep",
      "--grid",
      "beta=0.5,1,2",
      "--epochs",
      str(args.epochs),
      "--n-train",
      "20000",
      "--log-images-every",
      "5",
      "--no-progress",
      "--workdir",
      sweep,
    ],
    check=True,
  )
  port = free_port()
  server = subprocess.Popen(
    [sys.executable, "-m", "tensorboard.main", "--logdir", sweep, "--host", "127.0.0.1", "--port", str(port)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.time() + 60
    while True:
      try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as response:
          if len(response.read()) > 2:
            break
      except OSError:
        pass
      if time.time() > deadline:
        raise SystemExit("docs/screenshots.py: tensorboard did not answer within 60 s")
      time.sleep(0.5)
    pages = (
      ("#scalars&tagFilter=elbo", "tensorboard_scalars.png"),
      ("#images", "tensorboard_images.png"),
      ("#hparams", "tensorboard_hparams.png"),
    )
    for page, name in pages:
      path = os.path.join(args.out, name)
      subprocess.run(
        [
          chromium,
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--hide-scrollbars",
          "--window-size=1400,900",
          "--virtual-time-budget=20000",
          f"--screenshot={path}",
          f"http://127.0.0.1:{port}/{page}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
      )
      print(f"wrote {path}")
  finally:
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
