"""``python -m onnet_server`` runs the ``onnet`` command."""

import sys

from onnet_server.commands.main import main

# Guarded: the import pool's processes (core/row_preparer.py) import the main module too.
if __name__ == "__main__":
    sys.exit(main())
