"""The one exception type for bad input: its message is one line naming the problem and the fix."""


class JaxvaeError(Exception):
  """An error in the user's input: its message is one line naming the problem and the fix.

  The ``jaxvae`` command prints it as ``jaxvae: error: <message>`` and exits with status 2;
  whatever raised it has written nothing.
  """
