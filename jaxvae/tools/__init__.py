"""Tools on top of the runs: the ``jaxvae`` command, the launcher, teaching pictures, the explorer page.

``cli`` (every subcommand), ``launch`` (N processes as one JAX job on this machine),
``teaching`` (p and q on a grid, the pictures of ``jaxvae plot``), ``explorer`` (``jaxvae
explore``: one self-contained HTML page, with ``web/``).
"""
