"""Placeholder: replaced by the local implementation."""
import typer

app = typer.Typer(help="local commands", no_args_is_help=True)
