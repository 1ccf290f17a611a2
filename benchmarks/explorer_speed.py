"""How fast the explorer page is in headless Chromium, and how big it is.

  python benchmarks/explorer_speed.py [--epochs 10] [--screenshots docs/images]

Trains the 2-D model of docs/guides/notation.md (`jaxvae train --latent-dim 2 --epochs 10`), writes its
page (`jaxvae explore`), opens it from disk in headless Chromium with the network off, and prints
what the page measures with performance.now(): one decode of z (median of 200) and the posterior
grid of a test image (median of 7: a 25x25 coarse pass and the 50x50 grid, 3,125 decodes). Then
writes the page of the default model (d = 20, one short epoch: the size depends on the shapes
only) and prints both sizes, and a JSON line. With --screenshots, saves the 2-D page as loaded
(``explorer.png``) and with a drawn digit and q moved by hand (``explorer_drawn.png``).
Needs Chromium and chromedriver (Debian: apt install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def jaxvae(*args: str) -> None:
  subprocess.run([sys.executable, "-m", "jaxvae", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--epochs", type=int, default=10)
  ap.add_argument("--screenshots", metavar="DIR", help="save explorer.png and explorer_drawn.png there")
  args = ap.parse_args()
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By

  folder = tempfile.mkdtemp(prefix="jaxvae-explorer-")
  two_d, default = os.path.join(folder, "d2"), os.path.join(folder, "default")
  jaxvae(
    "train", "--latent-dim", "2", "--epochs", str(args.epochs), "--no-tensorboard", "--no-progress", "--workdir", two_d
  )
  jaxvae("explore", "--workdir", two_d)
  jaxvae("train", "--epochs", "1", "--n-train", "2000", "--no-tensorboard", "--no-progress", "--workdir", default)
  jaxvae("explore", "--workdir", default)

  options = webdriver.ChromeOptions()
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1560,1040"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
  try:
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    driver.get("file://" + os.path.join(two_d, "explorer.html"))
    timings = driver.execute_script("return explorer.benchmark(7)")
    if args.screenshots:
      os.makedirs(args.screenshots, exist_ok=True)
      driver.execute_script("explorer.setImage(4)")
      plane = driver.find_element(By.ID, "plane")
      w = plane.size["width"]
      actions = ActionChains(driver)
      actions.move_to_element_with_offset(plane, int(-0.25 * w), int(0.2 * w)).click()
      actions.move_to_element_with_offset(plane, int(0.1 * w), int(-0.3 * w)).click().perform()
      driver.save_screenshot(os.path.join(args.screenshots, "explorer.png"))
      pad = driver.find_element(By.ID, "drawing")
      p = pad.size["width"]
      chain = ActionChains(driver).move_to_element_with_offset(pad, int(-0.2 * p), int(-0.28 * p)).click_and_hold()
      for dx, dy in [(10, -4), (12, 2), (6, 10), (-6, 12), (-12, 12), (-10, 8), (14, 2), (16, 0)]:  # a "2"
        chain = chain.move_by_offset(int(dx * p / 100), int(dy * p / 100))
      chain.release().perform()
      driver.execute_script(
        "const s = document.getElementById('shift-1'); s.value = Number(s.value) + "
        "0.3 * (Number(s.max) - Number(s.min)) / 2; s.dispatchEvent(new Event('input'));"
      )
      driver.save_screenshot(os.path.join(args.screenshots, "explorer_drawn.png"))
  finally:
    driver.quit()
  sizes = {
    name: os.path.getsize(os.path.join(path, "explorer.html")) / 1e6
    for name, path in (("d2", two_d), ("default", default))
  }
  print(
    f"2-D model ({args.epochs} epochs): one decode {timings['decode_ms']:.2f} ms, the posterior grid "
    f"{timings['grid_ms']:.0f} ms ({timings['grid_points']} decodes: 25x25 coarse + 50x50); "
    f"page {sizes['d2']:.2f} MB; default model (d = 20) page {sizes['default']:.2f} MB"
  )
  print(
    json.dumps(
      {
        **timings,
        "page_mb_d2": round(sizes["d2"], 3),
        "page_mb_default": round(sizes["default"], 3),
        "epochs": args.epochs,
      }
    )
  )
  shutil.rmtree(folder, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
