"""``python -m fedprog``."""

from .cli import main

main()
