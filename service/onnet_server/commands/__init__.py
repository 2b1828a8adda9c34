"""The `onnet` command line: one module per group of subcommands (main.py is the entry)."""
