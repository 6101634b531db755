"""`python -m losslens` runs the CLI."""
from .cli import main

main()
