"""Model publication as a resource of the Pulumi program: `pulumi up` publishes model_repo/ to a site's bucket.

`ModelPublication` ("pulumi-python:dynamic/hybridserve:ModelPublication") is a dynamic resource. Its
digest, version and Triton URI are computed while the program runs (hybridserve.publish.repository_digest,
triton_uri: no built artifacts needed), so `pulumi preview` shows the version a change would publish and
the URI Triton will get, and an unchanged repository is no change at all, in preview and in update.

The provider (`ModelPublicationProvider`) is a thin shell over hybridserve.publish, which publishes with
the sync engine (encrypted, verified, atomically published per model):

- create: publish; history = [version]; id "<bucket>/<prefix>".
- diff: nothing changed when digest, target, store, keep (and credentials) are the same; a new
  bucket, prefix or endpoint replaces the resource (create the new one, then delete the old one); a new
  digest, new encryption, new credentials or a new keep is an update. `source` (where model_repo/ is on
  this machine) is not compared: moving the checkout changes nothing.
- update: publish the new version if the digest (or the encryption) changed, history = [new, *old], and
  delete from the store the versions beyond `keep`; only versions this resource recorded are ever deleted,
  never the current one, never another prefix.
- delete: delete every version in history. read (refresh): drop the versions no longer in the store;
  when the current one is gone its digest is cleared, so the next `pulumi up` publishes it again.
- pinned (`serving.publication.pin_version`, what `hybridserve ci rollback` sets): `version` is a version
  this resource published and still keeps (its history) and the store still holds (list_versions), not
  the repository's content; update publishes nothing and makes it current (history = [pinned, *others]);
  create refuses (a new publication has published nothing to pin). `digest` is
  "" then (the repository's digest does not describe what is served); removing the pin is an update
  that publishes the repository again (objects already there are not uploaded again).

Wire format (camelCase, the same in inputs and outputs):
    source       absolute path of the model repository
    target       {name, gpu, instancesPerGpu}
    store        {bucket, prefix, region, endpointUrl, sse, kmsKeyId, roleArn}
    credentials  {accessKey, secretKey} or None (a Pulumi secret)
    digest, version, uri, keep
    pinned       true when `version` is pinned (absent otherwise: states written before pinning existed
                 compare equal)
    history      (output) the versions kept, newest first; publishedAt (output) when the last upload ran

The provider object is pickled by dill into the state: it holds no attributes (no clients, no
credentials), imports boto3 and the data plane inside its methods, and its class is pickled by reference
(the dynamic-provider host imports this module from the installed package). Errors from the data plane
reach `pulumi up` as one short message (ModelPublicationError), not a traceback.

A dynamic resource runs under the engine's default provider of the `pulumi-python` package. Pulumi exempts
only the "pulumi" package from `pulumi:disable-default-providers`, so `["*"]` would deny it: the stacks list
the packages they use instead, and `hybridserve validate` refuses "*" (hybridserve.stackconfig.loader).

Wiring: infra/components/serving.py, one per site in serving.targets, `depends_on` the storage components
(the writer role's policy, the bucket policy and the key policy are their children; the role ARN alone would
not wait for them). IAM changes of the same `pulumi up` take a while to apply; AssumeRole and the uploads
under the role retry AccessDenied for about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from hybridserve.errors import UserError
from hybridserve.publish.digest import DIGEST_PATTERN, VERSION_PATTERN
from hybridserve.publish.render import Target

TYPE_MODULE = "hybridserve"
TYPE_NAME = "ModelPublication"
TYPE_TOKEN = f"pulumi-python:dynamic/{TYPE_MODULE}:{TYPE_NAME}"
MIN_KEEP = 2
DEFAULT_KEEP = 3
SSE_VALUES = ("aws:kms", "AES256", "none")
# A bucket, prefix or endpoint change means another place: publish there, then delete here.
REPLACE_ON = ("bucket", "prefix", "endpointUrl")
COMPARED = ("digest", "version", "uri", "target", "store", "keep", "credentials", "pinned")
OUTPUT_ONLY = ("history", "publishedAt")


class ModelPublicationError(Exception):
    """What `pulumi up` prints when a publication fails: one message, naming what to fix."""


# --------------------------------------------------------------------------------------------- wire helpers


def _is_unknown(value: Any) -> bool:
    from pulumi.runtime import rpc

    return isinstance(value, str) and value == rpc.UNKNOWN


def _plain(value: Any) -> Any:
    """A comparable form: None for ""/None, ints for integral floats (the wire has only doubles), dicts without Nones."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items()) if _plain(v) is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == "":
        return None
    return value


def _target(props: dict[str, Any]) -> Target:
    t = props.get("target") or {}
    return Target(name=t.get("name"), gpu=t.get("gpu"), instances_per_gpu=_plain(t.get("instancesPerGpu", 1)),
                  keep_backend=bool(t.get("keepBackend", False)))


def _store(props: dict[str, Any]):
    from hybridserve.publish.store import Store

    s = props.get("store") or {}
    c = props.get("credentials") or {}
    return Store(
        bucket=s.get("bucket") or "",
        prefix=s.get("prefix") or "",
        region=s.get("region") or "us-east-1",
        endpoint_url=s.get("endpointUrl") or None,
        sse=s.get("sse") or "aws:kms",
        kms_key_id=s.get("kmsKeyId") or None,
        access_key=c.get("accessKey") or None,
        secret_key=c.get("secretKey") or None,
        role_arn=s.get("roleArn") or None,
    )


def _history(props: dict[str, Any]) -> list[str]:
    """The recorded versions, newest first; only well-formed names (nothing else is ever deleted)."""
    recorded = props.get("history")
    if recorded is None:
        recorded = [props.get("version")]
    out: list[str] = []
    for v in recorded:
        if isinstance(v, str) and VERSION_PATTERN.fullmatch(v) and v not in out:
            out.append(v)
    return out


def _encryption(props: dict[str, Any]) -> tuple[Any, Any]:
    """What the objects are encrypted with: a change re-encrypts the current version (same bytes, new key)."""
    store = props.get("store") or {}
    return _plain(store.get("sse")), _plain(store.get("kmsKeyId"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _failed(what: str, exc: UserError) -> ModelPublicationError:
    return ModelPublicationError(f"model publication: {what}: {exc}")


def _require_pinned(store, version: str) -> None:
    """A pinned version must already be in the store: nothing is published for it."""
    from hybridserve.publish.store import list_versions

    try:
        present = list_versions(store)
    except UserError as exc:
        raise _failed(f"listing the versions under s3://{store.bucket}/{store.base} for the pinned {version}", exc) from None
    if version not in present:
        raise ModelPublicationError(
            f"model publication: hybridserve:serving.publication.pin_version {version} is not in s3://{store.bucket}/{store.base} "
            f"(versions there: {', '.join(present) or 'none'}); pin one of those, or remove the pin to publish model_repo/"
        )


# --------------------------------------------------------------------------------------------- the provider


class ModelPublicationProvider(dynamic.ResourceProvider):
    """CRUD of a ModelPublication through hybridserve.publish (see the module docstring)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        inputs = {k: v for k, v in news.items() if k not in OUTPUT_ONLY}
        if isinstance(inputs.get("keep"), float) and inputs["keep"].is_integer():
            inputs["keep"] = int(inputs["keep"])
        return dynamic.CheckResult(inputs, [dynamic.CheckFailure(p, r) for p, r in check_inputs(inputs)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        old_store, new_store = olds.get("store") or {}, news.get("store") or {}
        replaces = []
        if any(_is_unknown(new_store.get(k)) or _plain(old_store.get(k)) != _plain(new_store.get(k)) for k in REPLACE_ON):
            replaces.append("store")
        changed = [k for k in COMPARED if _is_unknown(news.get(k)) or _plain(olds.get(k)) != _plain(news.get(k))]
        return dynamic.DiffResult(changes=bool(changed or replaces), replaces=replaces, stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        from hybridserve.publish.store import publish

        store = _store(props)
        if props.get("pinned"):
            # Only versions this resource published may become current (and later be deleted as old): a new
            # publication has none yet.
            raise ModelPublicationError(
                f"model publication: hybridserve:serving.publication.pin_version {props.get('version')}: s3://{store.bucket}/{store.base} "
                "has no version published by this stack yet; remove the pin so that model_repo/ is published"
            )
        try:
            publish(Path(props["source"]), store, _target(props), expected_digest=props["digest"])
        except UserError as exc:
            raise _failed(f"publishing {props.get('version')} to s3://{store.bucket}/{store.base}", exc) from None
        outs = {k: v for k, v in props.items() if k not in OUTPUT_ONLY}
        outs.update(history=[props["version"]], publishedAt=_now())
        return dynamic.CreateResult(f"{store.bucket}/{store.prefix.strip('/')}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        from hybridserve.publish.store import delete_version, publish

        store, current, keep = _store(news), news["version"], int(news["keep"])
        old_history = _history(olds)
        published_at = olds.get("publishedAt")
        if news.get("pinned"):
            if current not in old_history:
                raise ModelPublicationError(
                    f"model publication: hybridserve:serving.publication.pin_version {current} is not a version this stack published "
                    f"and keeps (kept: {', '.join(old_history) or 'none'}); pin one of those"
                )
            _require_pinned(store, current)
        elif news["digest"] != olds.get("digest") or _encryption(news) != _encryption(olds) or current not in old_history:
            try:
                publish(Path(news["source"]), store, _target(news), expected_digest=news["digest"])
            except UserError as exc:
                raise _failed(f"publishing {current} to s3://{store.bucket}/{store.base}", exc) from None
            published_at = _now()
        history = [current] + [v for v in old_history if v != current]
        kept, beyond = history[:keep], history[keep:]
        for version in beyond:
            try:
                delete_version(store, version)
            except UserError as exc:
                raise _failed(f"deleting old version {version} (keep is {keep})", exc) from None
        outs = {k: v for k, v in news.items() if k not in OUTPUT_ONLY}
        outs.update(history=kept, publishedAt=published_at)
        return dynamic.UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        from hybridserve.publish.store import delete_version
        from hybridserve.sync.errors import EXIT_NO_BUCKET

        store = _store(props)
        for version in _history(props):
            try:
                delete_version(store, version)
            except UserError as exc:
                if exc.exit_code == EXIT_NO_BUCKET:
                    return  # the bucket is gone, and every version with it
                raise _failed(f"deleting version {version} from s3://{store.bucket}/{store.base}", exc) from None

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        from hybridserve.publish.store import list_versions
        from hybridserve.sync.errors import EXIT_NO_BUCKET

        store = _store(props)
        try:
            present = set(list_versions(store))
        except UserError as exc:
            if exc.exit_code == EXIT_NO_BUCKET:
                return dynamic.ReadResult("", {})
            raise _failed(f"reading the versions under s3://{store.bucket}/{store.base}", exc) from None
        outs = dict(props)
        outs["history"] = [v for v in _history(props) if v in present]
        if props.get("version") not in present:
            outs["digest"] = ""  # gone from the store: the next update publishes it again
        return dynamic.ReadResult(id_, outs)


def check_inputs(props: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every input that cannot work; unknown values (preview) are not judged."""
    from hybridserve.publish.digest import version_name
    from hybridserve.publish.store import Store, triton_uri
    from hybridserve.sync.engine import _REGION, _ROLE_ARN, _endpoint_problem, _prefix_problem

    failures: list[tuple[str, str]] = []

    def fail(prop: str, reason: str) -> None:
        failures.append((prop, reason))

    source = props.get("source")
    if not _is_unknown(source):
        if not isinstance(source, str) or not Path(source).is_absolute():
            fail("source", f"{source!r}: give the absolute path of the model repository (model_repo/)")
        elif not Path(source).is_dir():
            fail("source", f"{source}: no such directory on this machine; run pulumi from a checkout that has model_repo/")

    target = props.get("target")
    if not isinstance(target, dict):
        fail("target", "missing; give {name, gpu, instancesPerGpu}")
    else:
        try:
            _target(props)
        except UserError as exc:
            for detail in exc.details or [exc.message]:
                fail("target", detail)

    store = props.get("store")
    known_store = isinstance(store, dict) and not any(_is_unknown(v) for v in store.values())
    if not isinstance(store, dict):
        fail("store", "missing; give {bucket, prefix, region, endpointUrl, sse, kmsKeyId, roleArn}")
        store = {}

    def known(key: str) -> Any:
        value = store.get(key)
        return None if _is_unknown(value) else value

    sse = known("sse") or "aws:kms"
    if sse not in SSE_VALUES:
        fail("store", f"sse {sse!r}: valid values are {', '.join(map(repr, SSE_VALUES))}")
    if known("kmsKeyId") and sse != "aws:kms":
        fail("store", f"kmsKeyId is only valid with sse 'aws:kms' (sse is {sse!r})")
    bucket = known("bucket")
    if not _is_unknown(store.get("bucket")) and (not bucket or not isinstance(bucket, str) or "/" in bucket):
        fail("store", f"bucket {bucket!r}: give a bucket (or Swift container) name, no slashes, no s3://")
    prefix = known("prefix") or ""
    problem = _prefix_problem(prefix) if isinstance(prefix, str) else "not a string"
    if problem:
        fail("store", f"prefix {prefix!r}: {problem}")
    region = known("region")
    if not _is_unknown(store.get("region")) and not _REGION.fullmatch(region or ""):
        fail("store", f"region {region!r}: not a region name, e.g. us-east-1 (Swift: its s3api location)")
    endpoint = known("endpointUrl")
    if endpoint:
        problem = _endpoint_problem(endpoint)
        if problem:
            fail("store", f"endpointUrl: {problem}")
    role_arn = known("roleArn")
    if role_arn and not _ROLE_ARN.fullmatch(role_arn):
        fail("store", f"roleArn {role_arn!r}: not an IAM role ARN, e.g. arn:aws:iam::123456789012:role/NAME")

    # Reported without a property: the engine prints a failing property's value, and this one is secret.
    credentials = props.get("credentials")
    if credentials is not None and not _is_unknown(credentials):
        if not isinstance(credentials, dict) or not credentials.get("accessKey") or not credentials.get("secretKey"):
            fail("", "credentials: give both accessKey and secretKey, or no credentials (then the role or the environment's)")

    keep = _plain(props.get("keep"))
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < MIN_KEEP:
        fail("keep", f"{keep!r}: versions kept for rollback; an integer >= {MIN_KEEP} (the current one and at least one before it)")

    digest = props.get("digest")
    version = props.get("version")
    if props.get("pinned"):
        if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
            fail("version", f"{version!r}: a pinned version is a published version name (v + 16 hex digits)")
            return failures
    elif not isinstance(digest, str) or not DIGEST_PATTERN.fullmatch(digest):
        fail("digest", f"{digest!r}: the sha256 hex digest of the repository (hybridserve.publish.repository_digest)")
        return failures
    elif version != version_name(digest):
        fail("version", f"{version!r} does not name digest {digest[:16]}...; expected {version_name(digest)!r}")
        return failures
    uri = props.get("uri")
    if known_store and not failures and not _is_unknown(uri):
        s = Store(bucket=store["bucket"], prefix=store.get("prefix") or "", region=store.get("region") or "us-east-1",
                  endpoint_url=store.get("endpointUrl") or None)
        try:
            expected = triton_uri(s, version)
        except UserError as exc:
            fail("store", str(exc))
        else:
            if uri != expected:
                fail("uri", f"{uri!r} is not Triton's URI of this version; expected {expected!r}")
    return failures


# --------------------------------------------------------------------------------------------- the resource


@dataclass
class ModelPublicationArgs:
    """What to publish where. Fields that come from other resources are Inputs (bucket, key, role, endpoint, keys).

    source: the model repository on this machine. target: hybridserve.publish.Target (GPU sites:
    gpu=True, serving.instances_per_gpu). sse: "aws:kms" on AWS (kms_key_id: the stack key ARN,
    role_arn: the model-writer role, the only one the key policy lets encrypt), "AES256" on Swift
    (access_key/secret_key: the EC2 credentials for its s3api; kept secret). keep: versions kept (>= 2).
    """

    source: Path
    target: Target
    bucket: pulumi.Input[str]
    prefix: str
    region: pulumi.Input[str]
    sse: str = "aws:kms"
    kms_key_id: pulumi.Input[str] | None = None
    role_arn: pulumi.Input[str] | None = None
    endpoint_url: pulumi.Input[str] | None = None
    access_key: pulumi.Input[str] | None = None
    secret_key: pulumi.Input[str] | None = None
    keep: int = DEFAULT_KEEP
    # Serve this already published version instead of the repository's content (rollback).
    pin_version: str | None = None


class ModelPublication(dynamic.Resource, module=TYPE_MODULE, name=TYPE_NAME):
    """The model repository published to one site's bucket; `uri` is Triton's --model-repository."""

    source: pulumi.Output[str]
    target: pulumi.Output[dict]
    store: pulumi.Output[dict]
    credentials: pulumi.Output[dict]
    digest: pulumi.Output[str]
    version: pulumi.Output[str]
    uri: pulumi.Output[str]
    keep: pulumi.Output[int]
    pinned: pulumi.Output[bool]
    history: pulumi.Output[list]
    publishedAt: pulumi.Output[str]

    def __init__(self, name: str, args: ModelPublicationArgs, opts: pulumi.ResourceOptions | None = None):
        from hybridserve.publish import Store, repository_digest, triton_uri

        source = Path(args.source).absolute()
        try:
            if isinstance(args.keep, bool) or not isinstance(args.keep, int) or args.keep < MIN_KEEP:
                raise UserError(f"keep {args.keep!r}: versions kept for rollback; an integer >= {MIN_KEEP}")
            if args.pin_version is not None and not VERSION_PATTERN.fullmatch(args.pin_version):
                raise UserError(f"pin_version {args.pin_version!r}: a published version name (v + 16 hex digits)")
            digest = repository_digest(source, args.target)
        except UserError as exc:
            raise pulumi.RunError(f"ModelPublication {name!r}: {exc}") from None
        version = args.pin_version or digest.version

        def uri_of(values: list[Any]) -> str:
            bucket, endpoint = values
            return triton_uri(Store(bucket=bucket, prefix=args.prefix, region="us-east-1", endpoint_url=endpoint or None), version)

        credentials = None
        if args.access_key is not None or args.secret_key is not None:
            credentials = pulumi.Output.secret({"accessKey": args.access_key, "secretKey": args.secret_key})
        props = {
            "source": str(source),
            "target": {"name": args.target.name, "gpu": args.target.gpu, "instancesPerGpu": args.target.instances_per_gpu,
                       **({"keepBackend": True} if args.target.keep_backend else {})},  # absent otherwise: old states compare equal
            "store": {
                "bucket": args.bucket,
                "prefix": args.prefix.strip("/"),
                "region": args.region,
                "endpointUrl": args.endpoint_url,
                "sse": args.sse,
                "kmsKeyId": args.kms_key_id,
                "roleArn": args.role_arn,
            },
            "credentials": credentials,
            "digest": "" if args.pin_version else digest.digest,
            "version": version,
            "uri": pulumi.Output.all(args.bucket, args.endpoint_url).apply(uri_of),
            "keep": args.keep,
            "history": None,
            "publishedAt": None,
        }
        if args.pin_version:
            props["pinned"] = True
        secret = pulumi.ResourceOptions(additional_secret_outputs=["credentials"])
        super().__init__(ModelPublicationProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))

    @property
    def published_at(self) -> pulumi.Output[str]:
        return self.__dict__["publishedAt"]
