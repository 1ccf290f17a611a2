"""The ``jaxvae`` command: a thin layer over the library.

  jaxvae train --workdir runs/first [--epochs 10] [--latent-dim 20] ...

Every error in the input is one line on stderr naming the problem and the fix,
with exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from jaxvae.config import Config, JaxvaeError

_DEFAULTS = Config()


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line (no usage dump) with exit status 2."""

  def error(self, message: str):
    raise JaxvaeError(f"{message} (see `{self.prog} --help`)")


def _int_list(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 400 or 200,200")


def _add_train_args(p: argparse.ArgumentParser) -> None:
  d = _DEFAULTS
  g = p.add_argument_group("data")
  g.add_argument("--dataset", help=f"'mnist' (embedded, offline) or 'tfds:NAME' (default {d.dataset})")
  g.add_argument("--tfds-data-dir", help="folder of prepared TFDS datasets")
  g.add_argument("--binarization", choices=["dynamic", "static"], help=f"(default {d.binarization})")
  g.add_argument("--binarization-seed", type=int, help="seed of the fixed test-set (and static training-set) draw")
  g.add_argument("--n-train", type=int, help="use the first N training images (default all)")
  g.add_argument("--n-test", type=int, help="use the first N test images (default all)")
  g = p.add_argument_group("model")
  g.add_argument("--hidden", type=_int_list, help=f"hidden widths, comma-separated (default {','.join(map(str, d.hidden))})")
  g.add_argument("--latent-dim", type=int, help=f"size of z (default {d.latent_dim})")
  g.add_argument("--activation", help=f"hidden nonlinearity (default {d.activation})")
  g = p.add_argument_group("objective and optimisation")
  g.add_argument("--beta", type=float, help=f"KL weight, 1 = the ELBO (default {d.beta:g})")
  g.add_argument("--kl", choices=["analytic", "mc"], help=f"KL estimator (default {d.kl})")
  g.add_argument("--epochs", type=int, help=f"(default {d.epochs})")
  g.add_argument("--batch-size", type=int, help=f"(default {d.batch_size})")
  g.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr:g})")
  g.add_argument("--seed", type=int, help=f"(default {d.seed})")
  g = p.add_argument_group("run folder")
  g.add_argument("--workdir", required=True, help="run folder; must not exist or be empty")
  g.add_argument("--overwrite", action="store_true", help="replace a non-empty run folder")
  g.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")


def config_from_args(args: argparse.Namespace) -> Config:
  """The defaults of :class:`Config`, overridden by every flag that was given."""
  names = {f.name for f in dataclasses.fields(Config)}
  given = {k: v for k, v in vars(args).items() if k in names and v is not None}
  return Config(**given).validate()


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jaxvae", description="Variational autoencoders in JAX, named as in the papers.")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  train = sub.add_parser("train", help="train a VAE and write a run folder", description="Train a VAE and write a run folder.")
  _add_train_args(train)
  return parser


def _train(args: argparse.Namespace) -> int:
  from jaxvae.train import train_and_evaluate

  config = config_from_args(args)
  train_and_evaluate(config, args.workdir, overwrite=args.overwrite, progress=not args.no_progress)
  return 0


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``jaxvae`` console script; returns the exit status."""
  try:
    args = build_parser().parse_args(argv)
    return {"train": _train}[args.command](args)
  except JaxvaeError as e:
    print(f"jaxvae: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxvae: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
