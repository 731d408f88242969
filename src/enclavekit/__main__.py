"""``python -m enclavekit`` runs the command line."""

from .cli import main

main()
