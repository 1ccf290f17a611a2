"""The ``jaxvae`` command: a thin layer over the library.

  jaxvae train --workdir runs/first [--epochs 10] [--latent-dim 20] ...
  jaxvae eval --workdir runs/first [--k 5000]
  jaxvae sweep --grid beta=0.5,1,2 --grid seed=0,1 --workdir runs/beta
  jaxvae plot --workdir runs/z2;  jaxvae gaps --workdir runs/first
  jaxvae train --model my_models.py:make_vae --workdir runs/mine   (a model of one's own)
  jaxvae flags                                                      (every flag, as a table)
  jaxvae launch -n 2 train --data-parallel --workdir runs/dp       (2 processes as one JAX job)

Every error in the input is one line on stderr naming the problem and the fix,
with exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import jax

from jaxvae.errors import JaxvaeError, RunStopped, UserCodeError
from jaxvae.runs.config import Config, add_flags, flag_table, overrides_from_args
from jaxvae.runs.evaluate import evaluate_run, inference_gaps
from jaxvae.runs.folder import resume_config
from jaxvae.runs.grid import expand_grid, parse_grid
from jaxvae.runs.presets import PRESETS, preset_fields
from jaxvae.runs.run import train_and_evaluate
from jaxvae.runs.sweep import run_sweep
from jaxvae.tools.explorer import write_explorer
from jaxvae.tools.launch import launch
from jaxvae.tools.teaching import plot_run
from jaxvae.training.devices import initialize_distributed, watch_peers
from jaxvae.watch import writers

EPILOG = """examples:
  jaxvae train --workdir runs/first                       the default VAE on MNIST (shipped, offline)
  jaxvae train --latent-dim 2 --workdir runs/z2 && jaxvae plot --workdir runs/z2
  jaxvae sweep --grid beta=0.5,1,2 --grid seed=0,1 --workdir runs/beta
  jaxvae eval --workdir runs/first --k 5000               log p(x) by importance sampling
  jaxvae train --model my_models.py:make_vae --workdir runs/mine

`jaxvae COMMAND --help` gives a command's flags; `jaxvae flags` every config field with its sweep and
resume rules. Errors in the input are one line with exit status 2, and nothing is written.
Documentation (tutorials, guides, API and CLI references): the site built from docs/."""


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line (no usage dump) with exit status 2."""

  def error(self, message: str):
    raise JaxvaeError(f"{message} (see `{self.prog} --help`)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
  """Every config field as a flag (:func:`jaxvae.runs.config.add_flags`), and the run folder's flags."""
  add_flags(p)
  p.add_argument(
    "--preset",
    metavar="NAME",
    help=f"start from a paper's configuration ({', '.join(PRESETS)}); flags given override its fields",
  )
  g = p.add_argument_group("run folder")
  g.add_argument("--workdir", help="run folder; must not exist or be empty")
  g.add_argument("--overwrite", action="store_true", help="replace a non-empty run folder")
  g.add_argument("--no-progress", action="store_true", help="no progress bar (the per-epoch lines stay)")
  g.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files in W/tensorboard/")
  g.add_argument(
    "--log-images-every",
    type=int,
    default=5,
    metavar="N",
    help="samples and reconstructions to TensorBoard (and W&B) every N epochs and at the last (0: none; default 5)",
  )
  g.add_argument(
    "--wandb",
    action="store_true",
    help="also log to Weights & Biases, files in W/wandb/ (pip install 'jaxvae[wandb]'; "
    "WANDB_MODE=offline: no network, `wandb sync` later)",
  )
  g.add_argument("--wandb-project", default="jaxvae", metavar="NAME", help="the W&B project (default jaxvae)")


def _add_sweep_args(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("sweep")
  g.add_argument(
    "--grid",
    action="append",
    default=[],
    metavar="NAME=V1,V2",
    help="an axis of the grid, repeatable; any config field, e.g. beta=0.5,1,2 or hidden=400,200/200",
  )
  g.add_argument(
    "--configs",
    metavar="FILE.json",
    help="a JSON list of objects, each a set of config fields over the flags (instead of or beside --grid)",
  )
  g.add_argument(
    "--models-per-program",
    type=int,
    help="models stacked in one program per device (default: 4 on CPU, all on accelerators)",
  )


def config_from_args(args: argparse.Namespace) -> Config:
  """The defaults of :class:`Config`, overridden by the preset's fields, then by every flag that was given."""
  return Config(**given_fields(args)).validate()


def given_fields(args: argparse.Namespace) -> dict:
  """The config fields of ``--preset`` (if any) and of the flags given, which override them."""
  if getattr(args, "preset", None) is None:
    return overrides_from_args(args)
  preset = PRESETS.get(args.preset)
  fields = {**preset_fields(args.preset), **overrides_from_args(args)}
  paper = f"; the paper's model has {preset.paper_parameters:,} parameters" if preset.paper_parameters else ""
  _say(f"jaxvae: preset {args.preset}: {preset.about}{paper}")
  return fields


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
    prog="jaxvae",
    description="Variational autoencoders in JAX, named as in the papers: the encoder q_phi(z|x),\n"
    "the decoder p_theta(x|z), the prior p(z), trained by the ELBO.",
    epilog=EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  train = sub.add_parser(
    "train", help="train a VAE and write a run folder", description="Train a VAE and write a run folder."
  )
  _add_run_args(train)
  train.add_argument(
    "--data-parallel", action="store_true", help="split every batch over all devices (parameters replicated)"
  )
  train.add_argument("--resume", metavar="W", help="continue the run in folder W from its newest checkpoint")
  sw = sub.add_parser(
    "sweep",
    help="train many configs as vmapped programs and compare them",
    description="Train a grid or list of configs: models that share shapes train as one vmapped program.",
  )
  _add_run_args(sw)
  _add_sweep_args(sw)
  ev = sub.add_parser(
    "eval",
    help="log p(x) by importance sampling, ELBO, active units of a trained run",
    description="Evaluate the checkpoint of a run folder on its test set; writes W/eval.json.",
  )
  ev.add_argument("--workdir", required=True, help="a `jaxvae train` run folder")
  ev.add_argument("--k", type=int, default=5000, help="importance samples per test image (default 5000)")
  ev.add_argument("--batch-size", type=int, default=100, help="test images per batch (default 100)")
  ev.add_argument("--n-test", type=int, help="evaluate the first N test images (default all)")
  ev.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
  ev.add_argument("--no-progress", action="store_true")
  pl = sub.add_parser(
    "plot",
    help="pictures of p and q: latent manifold, q means, true posterior vs q, interpolations",
    description="Draw a run's model: manifold.png and posterior_vs_q.png (2-D latent), latent_scatter.png, "
    "interpolations.png.",
  )
  pl.add_argument("--workdir", required=True, help="a `jaxvae train` run folder")
  pl.add_argument("--out", help="folder for the PNG files (default: the run folder)")
  pl.add_argument("--n-posteriors", type=int, default=5, help="test digits in posterior_vs_q.png (default 5)")
  pl.add_argument("--seed", type=int, default=0, help="which test digits are drawn (default 0)")
  gp = sub.add_parser(
    "gaps",
    help="amortization and approximation gaps (Cremer et al. 2018) of a run's model",
    description="Optimize a Gaussian q*(z|x) per test image and split log p(x) - ELBO(q_phi) into the "
    "approximation gap log p(x) - ELBO(q*) and the amortization gap ELBO(q*) - ELBO(q_phi). Writes W/gaps.json "
    "and W/gaps.png.",
  )
  gp.add_argument("--workdir", required=True, help="a `jaxvae train` run folder")
  gp.add_argument("--n-test", type=int, default=1000, help="test images (default 1000)")
  gp.add_argument("--k", type=int, default=5000, help="importance samples for log p(x) (default 5000)")
  gp.add_argument("--steps", type=int, default=300, help="Adam steps on each q* (default 300)")
  gp.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate for q* (default 0.01)")
  gp.add_argument("--batch-size", type=int, default=100, help="test images per batch (default 100)")
  gp.add_argument("--seed", type=int, default=0)
  gp.add_argument("--no-progress", action="store_true")
  ex = sub.add_parser(
    "explore",
    help="write W/explorer.html: p and q of the run's model in one self-contained page",
    description="Write one HTML page (no server, no network) with the run's model evaluated in the browser: "
    "the latent plane and the decoder, and q_phi(z|x) against the true posterior p_theta(z|x) of a test image or "
    "one you draw. MLP models with a Bernoulli or Gaussian likelihood, the normal prior and the Gaussian posterior.",
  )
  ex.add_argument("--workdir", required=True, help="a `jaxvae train` run folder")
  ex.add_argument("--out", help="the page's path (default W/explorer.html)")
  ex.add_argument("--points", type=int, default=2000, help="test codes drawn on the latent plane (default 2000)")
  ex.add_argument("--images", type=int, default=100, help="test images to explain (default 100)")
  la = sub.add_parser(
    "launch",
    help="run `jaxvae train` or `jaxvae sweep` as N processes of one JAX job on this machine",
    description="Start N processes of one JAX job on this machine (coordinator on 127.0.0.1; gloo collectives "
    "on CPUs), each running the command that follows; the local stand-in for srun or a TPU slice.",
  )
  la.add_argument("-n", "--processes", type=int, default=2, help="processes (default 2)")
  la.add_argument("--port", type=int, help="the coordinator's port on 127.0.0.1 (default: a free one)")
  la.add_argument(
    "job", nargs=argparse.REMAINDER, help="the jaxvae command and its flags, e.g. train --data-parallel ..."
  )
  sub.add_parser(
    "flags",
    help="every config flag as a markdown table (as in the CLI reference)",
    description="Print the table of every config flag: default, sweep and resume rules, meaning.",
  )
  return parser


def _train(args: argparse.Namespace) -> int:
  if args.resume:
    if args.workdir and os.path.abspath(args.workdir) != os.path.abspath(args.resume):
      raise JaxvaeError(f"--resume {args.resume} and --workdir {args.workdir} differ: give only --resume")
    if args.overwrite:
      raise JaxvaeError("--resume continues a run and --overwrite replaces it: give one of them")
    if args.preset:
      raise JaxvaeError("--resume continues a run with its own config: drop --preset")
    workdir = args.resume
    config = resume_config(workdir, overrides_from_args(args))
  else:
    if not args.workdir:
      raise JaxvaeError("the following arguments are required: --workdir (or --resume W to continue a run)")
    workdir = args.workdir
    config = config_from_args(args)
  initialize_distributed()
  train_and_evaluate(
    config,
    workdir,
    overwrite=args.overwrite,
    resume=bool(args.resume),
    progress=not args.no_progress,
    data_parallel=args.data_parallel,
    callbacks=_callbacks(args),
  )
  return 0


def _callbacks(args: argparse.Namespace) -> list:
  """The CLI's callbacks: TensorBoard event files unless --no-tensorboard; W&B with --wandb."""
  if args.log_images_every < 0:
    raise JaxvaeError(f"--log-images-every {args.log_images_every} must be an integer >= 0 (0: no images)")
  callbacks = [] if args.no_tensorboard else [writers.tensorboard(images_every=args.log_images_every)]
  if args.wandb:
    problem = writers.wandb_problem()
    if problem:
      raise JaxvaeError(f"--wandb: {problem}")
    callbacks.append(writers.wandb(project=args.wandb_project, images_every=args.log_images_every))
  return callbacks


def _sweep(args: argparse.Namespace) -> int:
  if not args.workdir:
    raise JaxvaeError("the following arguments are required: --workdir")
  overrides = given_fields(args)
  Config(**overrides).validate()
  grid = parse_grid(args.grid)
  bases = [overrides]
  if args.configs:
    try:
      with open(args.configs) as f:
        listed = json.load(f)
    except (OSError, ValueError) as e:
      raise JaxvaeError(
        f"cannot read --configs {args.configs} ({e}): give a JSON list of objects of config fields"
      ) from None
    if not isinstance(listed, list) or not listed or not all(isinstance(d, dict) for d in listed):
      raise JaxvaeError(f"--configs {args.configs} must hold a non-empty JSON list of objects of config fields")
    bases = [{**overrides, **changes} for changes in listed]
    for base in bases:
      Config.from_dict(base).validate()
  elif not grid:
    raise JaxvaeError("a sweep needs axes: give --grid NAME=V1,V2 (repeatable) or --configs FILE.json")
  configs = [c for base in bases for c in expand_grid(base, grid)]
  if args.models_per_program is not None and args.models_per_program < 1:
    raise JaxvaeError(f"models_per_program={args.models_per_program} must be an integer >= 1")
  initialize_distributed()
  run_sweep(
    configs,
    args.workdir,
    overwrite=args.overwrite,
    models_per_program=args.models_per_program,
    progress=not args.no_progress,
    callbacks=_callbacks(args),
  )
  return 0


def _eval(args: argparse.Namespace) -> int:
  r = evaluate_run(
    args.workdir,
    k=args.k,
    batch_size=args.batch_size,
    n_test=args.n_test,
    seed=args.seed,
    progress=not args.no_progress,
  )
  per_layer = "+".join(map(str, r["active_units_per_layer"]))
  bits = f" = {r['bits_per_dim']:.4f} bits/dim" if r["eight_bit"] else ""  # nats for binary data, bits for 8-bit
  print(
    f"{args.workdir} (epoch {r['checkpoint_epoch']}), {r['n_test']} test examples, k={r['k']}:\n"
    f"  log p(x) {r['test_log_px']:.3f} nats{bits}  (s.e. {r['test_log_px_se']:.3f} over images, "
    f"{r['test_log_px_mc_se']:.4f} of the sampling)\n"
    f"  ELBO {r['test_elbo']:.3f} nats  = log p(x|z) {r['test_log_p_x_given_z']:.3f} - KL {r['test_kl']:.3f};  "
    f"log p(x) - ELBO {r['test_elbo_gap']:.3f}\n"
    f"  active units {r['active_units']} ({per_layer});  "
    f"{r['samples_per_sec']:,.0f} samples/s, {r['seconds']:.1f} s;  "
    f"written to {os.path.join(args.workdir, 'eval.json')}"
  )
  return 0


def _plot(args: argparse.Namespace) -> int:
  if args.n_posteriors < 1 or args.n_posteriors > 10:
    raise JaxvaeError(f"n_posteriors={args.n_posteriors} must be between 1 and 10")
  for path in plot_run(args.workdir, args.out, n_posteriors=args.n_posteriors, seed=args.seed):
    print(f"wrote {path}")
  return 0


def _gaps(args: argparse.Namespace) -> int:
  r = inference_gaps(
    args.workdir,
    n_test=args.n_test,
    k=args.k,
    steps=args.steps,
    lr=args.lr,
    batch_size=args.batch_size,
    seed=args.seed,
    progress=not args.no_progress,
  )
  print(
    f"{args.workdir} (epoch {r['checkpoint_epoch']}), {r['n_test']} test examples:\n"
    f"  log p(x) {r['log_px']:.3f} (k={r['k']})   ELBO(q*) {r['elbo_q_star']:.3f}   ELBO(q_phi) {r['elbo_q_phi']:.3f}\n"
    f"  approximation gap log p(x) - ELBO(q*)   {r['approximation_gap']:.3f} +- {r['approximation_gap_se']:.3f} nats\n"
    f"  amortization gap  ELBO(q*) - ELBO(q_phi) {r['amortization_gap']:.3f} +- {r['amortization_gap_se']:.3f} nats\n"
    f"  wrote {os.path.join(args.workdir, 'gaps.json')} and gaps.png ({r['seconds']:.1f} s)"
  )
  return 0


def _explore(args: argparse.Namespace) -> int:
  if args.points < 1 or args.images < 1:
    raise JaxvaeError(f"--points {args.points} and --images {args.images} must be at least 1")
  path = write_explorer(args.workdir, args.out, n_points=args.points, n_images=args.images)
  print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB): open it in a browser, no server needed")
  return 0


def _launch(args: argparse.Namespace) -> int:
  return launch(args.processes, args.job[1:] if args.job[:1] == ["--"] else args.job, args.port)


def _flags(args: argparse.Namespace) -> int:
  print(flag_table())
  return 0


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``jaxvae`` console script; returns the exit status."""
  try:
    args = build_parser().parse_args(argv)
    commands = {
      "train": _train,
      "sweep": _sweep,
      "eval": _eval,
      "plot": _plot,
      "gaps": _gaps,
      "explore": _explore,
      "flags": _flags,
      "launch": _launch,
    }
    with watch_peers():
      return commands[args.command](args)
  except JaxvaeError as e:
    if isinstance(e, UserCodeError) and e.__cause__ is not None:  # their bug: its traceback, then our line
      traceback.print_exception(e.__cause__)
    _say(f"jaxvae: error: {e.for_command_line()}")
    return e.exit_code
  except RunStopped as e:  # each kind of stop has its own exit status (jaxvae.errors)
    if e.everywhere or not _several_processes():
      _say(str(e))
      return e.exit_code
    # This process alone (a lost peer, a failed write on process 0): exit at once, past JAX's
    # shutdown barrier, which would wait for a process that died or is still in a collective.
    print(str(e), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(e.exit_code)
  except KeyboardInterrupt:
    _say("jaxvae: interrupted")
    return 130
  except Exception:
    if not _several_processes():
      raise
    traceback.print_exc()  # a bug, in a job of several processes: its traceback, then out past the barrier
    sys.stderr.flush()
    os._exit(1)


def _several_processes() -> bool:
  return jax.distributed.is_initialized() and jax.process_count() > 1


def _say(line: str) -> None:
  """A run's last line: from process 0 only when several processes run one job (they all stop alike)."""
  if not _several_processes() or jax.process_index() == 0:
    print(line, file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
