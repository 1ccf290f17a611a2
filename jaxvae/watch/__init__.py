"""What shows a run as it goes: progress lines, PNG figures, callbacks, TensorBoard and W&B writers.

``progress`` (a bar on a terminal, lines in a log), ``plots`` (matplotlib figures of arrays),
``callbacks`` (:class:`Callback`, what a run calls after each epoch), ``writers`` (TensorBoard
and Weights & Biases as callbacks). They depend on no other part of jaxvae: the runs call them.
"""
