"""Allow ``python -m loginetl``."""

from loginetl.cli import main

main()
