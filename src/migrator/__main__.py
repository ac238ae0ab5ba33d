"""`python -m migrator` is the `migrator` command."""

from .cli import main

main(prog_name="migrator")
