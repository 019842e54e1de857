"""``python -m telco_node``."""

from telco_node.cli import main

main()
