"""Stop before installing anything when this interpreter is not one the lock file supports.

Run by the Makefile with the interpreter it is about to use, so this file must run on any Python,
including ones far too old for the project: no f-strings, no annotations, standard library only.
The supported range is `requires-python` in pyproject.toml.
"""
import os
import re
import sys


def supported_range():
    """(lowest, first unsupported) as tuples, read from pyproject.toml's requires-python."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml")) as handle:
        text = handle.read()
    spec = re.search(r'requires-python\s*=\s*"([^"]+)"', text).group(1)
    low = re.search(r">=\s*([\d.]+)", spec).group(1)
    high = re.search(r"<\s*([\d.]+)", spec).group(1)
    as_tuple = lambda version: tuple(int(part) for part in version.split("."))  # noqa: E731
    return as_tuple(low), as_tuple(high), spec


def main():
    low, high, spec = supported_range()
    here = tuple(sys.version_info[:3])
    if low <= here < high:
        return 0
    shown = ".".join(str(part) for part in here)
    sys.stderr.write(
        "error: {exe} is Python {shown}; this project supports Python {spec} "
        "(3.11.2 or later 3.11, 3.12, 3.13).\n"
        "Choose another interpreter, for example:\n"
        "    make demo PYTHON=python3.12\n"
        "(`ls /usr/bin/python3*` lists the ones installed; pyenv or uv can install one: "
        "`uv python install 3.12`.)\n".format(exe=sys.executable, shown=shown, spec=spec))
    return 2


if __name__ == "__main__":
    sys.exit(main())
