"""Shortcuts for the tests: the built-in model and trainer of a config, for MNIST-shaped data."""

from jaxvae.runs import build

MNIST_SHAPE = (28, 28, 1)


def mnist_vae(config):
  """``config``'s model for 28x28x1 uint8 images."""
  return build.make_vae(config, MNIST_SHAPE)


def mnist_trainer(config, train_size=60_000, **kwargs):
  """``config``'s trainer for ``train_size`` 28x28x1 uint8 images."""
  return build.trainer_for(config, data_shape=MNIST_SHAPE, train_size=train_size, **kwargs)


def session_hparams(accumulator):
  from tensorboard.plugins.hparams import plugin_data_pb2

  for content in accumulator.PluginTagToContent("hparams").values():
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.HasField("session_start_info"):
      return {
        k: v.number_value if v.HasField("number_value") else v.string_value
        for k, v in data.session_start_info.hparams.items()
      }
  return None
