"""``python -m jaxvae``: the ``jaxvae`` command (:mod:`jaxvae.tools.cli`)."""

import sys

from jaxvae.tools.cli import main

sys.exit(main())
