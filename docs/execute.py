"""Executes tutorials as the site's build does, and prints each one's time.

    python docs/execute.py docs/tutorials/p_and_q.md [...] [--save DIR]

Each MyST notebook runs top to bottom in a fresh ``python3`` kernel, in its own folder, as
myst-nb runs it; a cell that raises stops it with the cell's traceback and exit status 1.
``--save DIR`` writes the executed notebooks there (``.ipynb``, outputs included); ``--cells``
prints each code cell's time, to find where a slow tutorial spends it.
"""

import argparse
import datetime
import os
import sys
import time

import jupytext
import nbclient
import nbformat


def _seconds(stamp: str) -> float:
  return datetime.datetime.fromisoformat(stamp.rstrip("Z")).timestamp()


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("paths", nargs="+", help="MyST notebooks (.md) or .ipynb files")
  parser.add_argument("--save", help="a folder for the executed notebooks")
  parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may take")
  parser.add_argument("--cells", action="store_true", help="print each code cell's time")
  args = parser.parse_args()
  failed = 0
  for path in args.paths:
    notebook = jupytext.read(path)
    start = time.perf_counter()
    try:
      nbclient.NotebookClient(
        notebook, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
      ).execute()
    except nbclient.exceptions.CellExecutionError as error:
      failed += 1
      print(f"{path}: FAILED after {time.perf_counter() - start:.1f} s\n{error}", file=sys.stderr)
      continue
    print(f"{path}: {time.perf_counter() - start:.1f} s", flush=True)
    if args.cells:
      for cell in notebook.cells:
        times = cell.metadata.get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in times:
          spent = _seconds(times["shell.execute_reply"]) - _seconds(times["iopub.execute_input"])
          print(f"  {spent:6.1f} s  {cell.source.splitlines()[0][:100]}")
    if args.save:
      os.makedirs(args.save, exist_ok=True)
      name = os.path.splitext(os.path.basename(path))[0] + ".ipynb"
      nbformat.write(notebook, os.path.join(args.save, name))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
