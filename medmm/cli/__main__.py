"""`python -m medmm.cli`: the command line."""

from medmm.cli import main

main()
