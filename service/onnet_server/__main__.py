"""``python -m onnet_server`` runs the ``onnet`` command."""

from onnet_server.cli import main

main()
