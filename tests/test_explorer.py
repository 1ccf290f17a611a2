"""The explorer page (`jaxvae explore`), opened in headless Chromium: its numbers are jaxvae's numbers."""

import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.core.distributions import Gaussian
from jaxvae.runs.config import Config
from jaxvae.runs.evaluate import load_run
from jaxvae.runs.folder import write_run_files
from jaxvae.tools.cli import main
from jaxvae.tools.explorer import check_explorable
from jaxvae.tools.teaching import bounds_on_grid

TINY = [
  "--hidden",
  "32",
  "--batch-size",
  "64",
  "--n-train",
  "1024",
  "--n-test",
  "200",
  "--epochs",
  "2",
  "--no-progress",
  "--no-tensorboard",
]
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.mark.parametrize(
  "changes, named",
  [
    (dict(likelihood="discretized-logistic"), "the likelihood is discretized-logistic"),
    (dict(prior="vamp"), "the prior is vamp"),
    (dict(posterior="iaf"), "the posterior is iaf"),
    (dict(net="conv"), "the networks are conv"),
    (dict(model="burda2"), "the model is burda2"),
  ],
)
def test_other_models_are_refused_with_one_line_naming_what_differs(changes, named):
  with pytest.raises(Exception, match=re.escape(named)) as raised:
    check_explorable(Config(**changes).validate())
  assert "\n" not in str(raised.value)


def test_the_cli_refuses_before_loading_anything(tmp_path, capsys):
  write_run_files(str(tmp_path / "W"), Config(prior="vamp").validate(), [])
  assert main(["explore", "--workdir", str(tmp_path / "W")]) == 2
  err = capsys.readouterr().err.strip()
  assert "cannot draw this run: the prior is vamp" in err
  assert len(err.splitlines()) == 1 and not os.path.exists(tmp_path / "W" / "explorer.html")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Small trained models with their pages: d = 2 and d = 3 (Bernoulli), and d = 2 with a Gaussian likelihood."""
  out = {}
  for name, flags in (
    (2, ["--latent-dim", "2"]),
    (3, ["--latent-dim", "3"]),
    ("gaussian", ["--latent-dim", "2", "--likelihood", "gaussian"]),
  ):
    workdir = str(tmp_path_factory.mktemp(f"model-{name}") / "W")
    assert main(["train", *TINY, *flags, "--workdir", workdir]) == 0
    assert main(["explore", "--workdir", workdir, "--points", "300", "--images", "10"]) == 0
    out[name] = workdir
  return out


@pytest.mark.slow
def test_the_page_is_one_file_that_loads_nothing_from_anywhere(runs):
  with open(os.path.join(runs[2], "explorer.html")) as f:
    page = f.read()
  assert not re.search(r"https?://|<link|\bsrc=|import\(|fetch\(|XMLHttpRequest", page)
  assert os.path.getsize(os.path.join(runs[2], "explorer.html")) < 5e6


@pytest.fixture(scope="module")
def browser():
  if not (BROWSER and DRIVER):
    pytest.skip("no Chromium and chromedriver here (Debian: apt install chromium chromium-driver)")
  webdriver = pytest.importorskip("selenium.webdriver")
  from selenium.webdriver.chrome.service import Service

  options = webdriver.ChromeOptions()
  options.binary_location = BROWSER
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1560,1000"):
    options.add_argument(flag)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(service=Service(DRIVER), options=options)
  driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
  yield driver
  driver.quit()


def open_page(browser, workdir):
  browser.get("file://" + os.path.abspath(os.path.join(workdir, "explorer.html")))
  errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
  assert errors == [] and browser.execute_script("return document.getElementById('status').textContent") == ""
  return lambda script: browser.execute_script("return " + script)


def python_means(workdir, z):
  run = load_run(workdir)
  return np.asarray(run.vae.mean_x(run.vae.p_theta(run.params, jnp.asarray(z, jnp.float32)))).reshape(len(z), -1)


def point_at(browser, element_id, fractions):
  """Moves the mouse to fractions (fx, fy) of an element's width and height, as a user would."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By

  element = browser.find_element(By.ID, element_id)
  w, h = element.size["width"], element.size["height"]
  ActionChains(browser).move_to_element_with_offset(
    element, int((fractions[0] - 0.5) * w), int((fractions[1] - 0.5) * h)
  ).perform()


@pytest.mark.parametrize("model", [2, 3, "gaussian"])
@pytest.mark.slow
def test_pointing_at_two_codes_shows_the_decoder_means_of_python(browser, runs, model):
  page = open_page(browser, runs[model])
  d = 3 if model == 3 else 2
  seen = []
  for fractions in ((0.3, 0.4), (0.7, 0.8)):
    point_at(browser, "plane", fractions)
    pointer = page("{z: explorer.state.pointer.z, mean: Array.from(explorer.state.pointer.mean)}")
    seen.append(pointer)
  assert seen[0]["z"] != seen[1]["z"] and len(seen[0]["z"]) == d
  expected = python_means(runs[model], [s["z"] for s in seen])
  np.testing.assert_allclose([s["mean"] for s in seen], expected, atol=2e-6)
  # The decoder's raw output too: the logits (or the Gaussian's means) of vae.p_theta.
  run = load_run(runs[model])
  raw = run.vae.p_theta(run.params, jnp.asarray([seen[1]["z"]], jnp.float32))
  raw = np.asarray(raw.mean if isinstance(raw, Gaussian) else raw).reshape(-1)
  np.testing.assert_allclose(page(f"Array.from(explorer.decode({seen[1]['z']}))"), raw, rtol=1e-5, atol=1e-5)
  if d > 2:  # the image explained on the plane through q's mean: sampling estimates, of Python's q
    explained = page("{q: explorer.state.explained.qPhi, numbers: explorer.state.explained.numbers}")
    q = run.vae.q_phi(run.params, jnp.asarray(run.setup.test_x[:1]))
    np.testing.assert_allclose(explained["q"]["mean"], q.mean[0], atol=1e-5)
    np.testing.assert_allclose(explained["q"]["logScale"], q.log_scale[0], atol=1e-5)
    numbers = explained["numbers"]
    assert numbers["method"] == "sampling" and numbers["k"] == 500
    assert all(np.isfinite(numbers[k]) for k in ("log_px", "elbo", "kl"))


@pytest.mark.parametrize("model", [2, "gaussian"])
@pytest.mark.slow
def test_explaining_a_test_image_gives_the_numbers_of_python(browser, runs, model):
  from selenium.webdriver.common.by import By

  page = open_page(browser, runs[model])
  for _ in range(3):
    browser.find_element(By.ID, "next").click()
  shown = page(
    "{source: explorer.state.explained.source, qPhi: explorer.state.explained.qPhi, "
    "numbers: explorer.state.explained.numbers}"
  )
  assert shown["source"] == "test image 3"
  run = load_run(runs[model])
  x = jnp.asarray(run.setup.test_x[3])
  q = jax.tree.map(lambda a: a[0], run.vae.q_phi(run.params, x[None]))
  np.testing.assert_allclose(shown["qPhi"]["mean"], q.mean, atol=1e-5)
  expected = bounds_on_grid(run.vae, run.params, x, q)
  for key in ("log_px", "elbo", "kl"):
    assert shown["numbers"][key] == pytest.approx(expected[key], abs=1e-3), key
  text = browser.find_element(By.ID, "n-elbo").text
  assert float(text) == pytest.approx(expected["elbo"], abs=1e-3)
  # Moving q away from the encoder's lowers the ELBO and raises KL(q || p(z|x)) by as much.
  browser.execute_script(
    "const s = document.getElementById('shift-1'); s.value = 1.5; s.dispatchEvent(new Event('input'));"
  )
  moved = page("explorer.state.explained.numbers")
  assert moved["log_px"] == pytest.approx(shown["numbers"]["log_px"], abs=1e-9)
  assert moved["elbo"] < shown["numbers"]["elbo"] and moved["kl"] > shown["numbers"]["kl"]


@pytest.mark.slow
def test_a_drawn_stroke_changes_q_to_the_encoders_q_of_the_drawing(browser, runs):
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By

  page = open_page(browser, runs[2])
  before = page("explorer.state.explained.qPhi.mean")
  pad = browser.find_element(By.ID, "drawing")
  w = pad.size["width"]
  chain = ActionChains(browser).move_to_element_with_offset(pad, 0, int(-0.3 * w)).click_and_hold()
  for _ in range(1, 9):
    chain = chain.move_by_offset(0, int(0.075 * w))
  chain.release().perform()
  drawn = page(
    "{source: explorer.state.explained.source, x: Array.from(explorer.state.explained.x), "
    "mean: explorer.state.explained.qPhi.mean}"
  )
  assert drawn["source"] == "your drawing" and 20 < sum(drawn["x"]) < 300  # a vertical stroke of 0/1 pixels
  assert drawn["mean"] != before
  run = load_run(runs[2])
  q = run.vae.q_phi(run.params, jnp.asarray(drawn["x"], jnp.float32).reshape(1, 28, 28, 1))
  np.testing.assert_allclose(drawn["mean"], q.mean[0], atol=1e-5)
  numbers = page("explorer.state.explained.numbers")
  assert all(np.isfinite(numbers[k]) for k in ("log_px", "elbo", "kl")) and numbers["kl"] > -1e-6


@pytest.mark.parametrize("model, plane", [(2, None), (3, "pca"), (3, "coords")])
@pytest.mark.slow
def test_every_code_drawn_lies_inside_the_plane_at_one_scale(browser, runs, model, plane):
  page = open_page(browser, runs[model])
  if plane:  # d > 2: the plane of the top two principal directions, or of the coordinates z1 and z3
    browser.execute_script(
      "const set = (id, v) => { const e = document.getElementById(id); e.value = v; "
      "e.dispatchEvent(new Event('change')); };"
      f"set('coord-j', 3); set('plane-mode', '{plane}');"
    )
  shown = page(
    "{view: explorer.state.view, origin: explorer.state.plane.origin, u: [explorer.state.plane.u1, "
    "explorer.state.plane.u2], size: [document.getElementById('plane').width, document.getElementById('plane').height]}"
  )
  view, (width, height) = shown["view"], shown["size"]
  if plane == "coords":
    assert shown["u"] == [[1, 0, 0], [0, 0, 1]]
  # The codes drawn: Python's q means of the page's test images, projected on the page's plane.
  run = load_run(runs[model])
  codes = np.asarray(run.vae.q_phi(run.params, jnp.asarray(run.setup.test_x[:300])).mean)
  ab = (codes - np.asarray(shown["origin"])) @ np.asarray(shown["u"]).T
  px = (ab[:, 0] - view["a0"]) / view["scale"]
  py = (view["b1"] - ab[:, 1]) / view["scale"]
  # Every dot (3 pixels wide) is inside the canvas, with room to spare.
  assert px.min() >= 5 and px.max() <= width - 5 and py.min() >= 5 and py.max() <= height - 5
  # One scale on both axes (circles stay circles), and the view fits the codes and the prior's 2 sigma ring:
  # their extent fills the canvas, but for the margin, along one axis.
  assert (view["a1"] - view["a0"]) / width == pytest.approx((view["b1"] - view["b0"]) / height, rel=1e-9)
  spans = [max(ab[:, 0].max(), 2) - min(ab[:, 0].min(), -2), max(ab[:, 1].max(), 2) - min(ab[:, 1].min(), -2)]
  assert max(spans[0] / width, spans[1] / height) / view["scale"] == pytest.approx(0.9, abs=0.01)
  # Pointing at the pixel of the highest and of the leftmost code gives that code (to a pixel), as a user sees it.
  for k in (int(np.argmin(py)), int(np.argmin(px))):
    point_at(browser, "plane", ((px[k] + 1) / (width + 2), (py[k] + 1) / (height + 2)))  # + 1: the 1-pixel border
    pointer = page("explorer.state.pointer")
    assert np.hypot(pointer["a"] - ab[k, 0], pointer["b"] - ab[k, 1]) <= 2 * view["scale"]
