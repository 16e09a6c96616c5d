"""Placeholder: replaced by the sync implementation."""


def sync_command() -> None:
    """Sync the model repository to an object store."""
    raise NotImplementedError
