"""Progress output: a bar on a terminal, whole lines (no carriage returns) in a file or a CI log."""

import io
import re

from jaxvae.tools.cli import main
from jaxvae.watch.progress import Progress

LINE = re.compile(r"^epoch (\d)/2: (\d+)/8 steps \((\d+)%\), \d+\.\d s, about \d+ s left$")


def test_a_run_logged_to_a_file_shows_progress_as_whole_lines(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("JAXVAE_PROGRESS_SECONDS", "0")  # a line at every report (default: every 30 s)
  tiny = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--n-train", "256", "--n-test", "64"]
  assert main(["train", *tiny, "--epochs", "2", "--no-tensorboard", "--workdir", str(tmp_path / "W")]) == 0
  err = capsys.readouterr().err  # not a terminal
  assert "\r" not in err
  lines = [line for line in err.splitlines() if line.startswith("epoch ")]
  parsed = [LINE.match(line) for line in lines]
  assert all(parsed), lines
  for epoch in (1, 2):  # steps 1..7 of 8: the epoch's own line reports the last
    done = [int(m[2]) for m in parsed if m[1] == str(epoch)]
    assert done == list(range(1, 8)), lines
  assert [int(m[3]) for m in parsed][:3] == [12, 25, 38]


def test_a_loop_shorter_than_the_interval_writes_no_line_and_a_terminal_gets_a_bar(monkeypatch):
  monkeypatch.setenv("JAXVAE_PROGRESS_SECONDS", "3600")
  log = io.StringIO()
  bar = Progress(stream=log)
  bar.start("eval k=10", total=100, unit="batch")
  for i in range(100):
    bar.update_to(i)
  bar.close()
  assert log.getvalue() == ""  # a loop shorter than the interval writes nothing

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  screen = Terminal()
  bar = Progress(stream=screen)
  bar.start("epoch 1/1", total=10)
  bar.update_to(5)
  bar.close()
  assert screen.getvalue().startswith("\repoch 1/1:   0%|")  # tqdm's bar, redrawn in place
