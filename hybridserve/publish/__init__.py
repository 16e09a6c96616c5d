"""Model publication: the validated model repository, rendered per target, as immutable versions in a bucket.

The data plane of the Pulumi resource `ModelPublication` (infra/components/publication.py); no Pulumi here.

    from hybridserve.publish import Store, Target, publish, repository_digest
    target = Target("aws", gpu=True, instances_per_gpu=1)
    d = repository_digest(Path("model_repo"), target)          # at program time, nothing built needed
    pub = publish(Path("model_repo"), Store(bucket, "models", "eu-west-1", kms_key_id=key_arn, role_arn=writer),
                  target, expected_digest=d.digest)            # -> pub.version, pub.uri

render.py  per-target copies (GPU sites: instance_group KIND_GPU), validated
digest.py  the content digest and version name, without built artifacts
store.py   Store, publish (through hybridserve.sync), list_versions, delete_version, triton_uri

Nothing here imports boto3, torch or protobuf at import time.
"""

from hybridserve.publish.digest import Digest, repository_digest, version_name
from hybridserve.publish.render import RenderedRepository, Target, render_repository
from hybridserve.publish.store import (
    Publication,
    Store,
    check_store,
    delete_version,
    list_versions,
    publish,
    triton_s3_uri,
    triton_uri,
)

__all__ = [
    "Digest",
    "Publication",
    "RenderedRepository",
    "Store",
    "Target",
    "check_store",
    "delete_version",
    "list_versions",
    "publish",
    "render_repository",
    "repository_digest",
    "triton_s3_uri",
    "triton_uri",
    "version_name",
]
