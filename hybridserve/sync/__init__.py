"""Encrypted, incremental, atomically published sync of the model repository to S3 (see engine.py).

    from hybridserve.sync import SyncTarget, sync_repository
    report = sync_repository(repo_dir, SyncTarget(bucket="b", prefix="models", sse="AES256", endpoint_url=url))

Nothing here imports boto3 at import time.
"""

from hybridserve.sync.engine import Change, SyncReport, SyncTarget, sync_repository

__all__ = ["Change", "SyncReport", "SyncTarget", "sync_repository"]
