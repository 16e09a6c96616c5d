"""Placeholder: replaced by the stack configuration implementation."""


def validate_command() -> None:
    """Validate stack configuration."""
    raise NotImplementedError


def plan_command() -> None:
    """Offline plan."""
    raise NotImplementedError
