"""``python -m choreograph`` runs the command line."""

from choreograph.ops.cli import main

main()
