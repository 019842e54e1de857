"""``python -m bank_node``."""

from bank_node.cli import main

main()
