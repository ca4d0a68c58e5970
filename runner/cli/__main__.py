"""``python -m runner.cli``: the same as the ``nightcrew`` command."""

from runner.cli.main import main

main()
