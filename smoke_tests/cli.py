"""Placeholder: replaced by the smoke-test implementation."""


def smoke_command() -> None:
    """Run the smoke gate."""
    raise NotImplementedError
