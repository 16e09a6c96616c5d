"""Exit codes of `hybridserve sync` and the translation of S3/KMS failures into UserErrors.

| Code | Meaning |
| ---: | --- |
| 2  | bad arguments (an unknown --sse, --kms-key-id without aws:kms, a bucket name S3 refuses, a region AWS does not have), found before any request |
| 20 | the model repository is invalid (what `hybridserve models validate` refuses, or a link the sync will not follow): nothing was published; files of new versions may already be uploaded, unpublished, and are reused by the next sync |
| 21 | the endpoint cannot be reached (connection refused, DNS, timeout), or is not an S3 API |
| 22 | the bucket does not exist |
| 23 | access denied, or no / wrong credentials (also an unknown AWS_PROFILE or an unparsable AWS config file) |
| 24 | the KMS key is missing, disabled, pending deletion, not symmetric, or the store cannot use SSE-KMS |
| 25 | a published model version changed in place: bump the version, or pass --replace |
| 26 | an uploaded object did not verify (size, sha256 metadata or encryption differ from what was sent) |
| 27 | any other error answered by the store |

Messages name the bucket, key or option and what would be valid; credentials are never printed.
"""

from __future__ import annotations

from hybridserve.errors import UserError

EXIT_BAD_ARGUMENT = 2
EXIT_INVALID_REPOSITORY = 20
EXIT_UNREACHABLE = 21
EXIT_NO_BUCKET = 22
EXIT_ACCESS_DENIED = 23
EXIT_KMS = 24
EXIT_PUBLISHED_CHANGED = 25
EXIT_VERIFY_FAILED = 26
EXIT_STORE_ERROR = 27

_DENIED = {
    "403",
    "AccessDenied",
    "Forbidden",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "UnrecognizedClientException",
}
_NO_BUCKET = {"NoSuchBucket"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", "") or "")


def error_message(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Message", "") or "")


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


def translate(exc: BaseException, *, where: str, bucket: str, what: str, sse: str = "none") -> UserError:
    """A UserError for a boto3/botocore failure while doing `what` (e.g. "uploading m/1/model.pt")."""
    from botocore.exceptions import (
        ClientError,
        ConfigParseError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)):
        if where.startswith("AWS S3"):  # no --endpoint-url: the region (checked against botocore's list) picked the host
            hint = "Check the network path to AWS (proxy, DNS, firewall); the host follows from --region"
        else:
            hint = "Check --endpoint-url (scheme, host and port) and that the store is running and reachable"
        return UserError(f"cannot reach the object store at {where} while {what}: {exc}. {hint}.", exit_code=EXIT_UNREACHABLE)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UserError(
            f"no usable credentials for {where} ({exc}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or run where an instance/IRSA role applies.",
            exit_code=EXIT_ACCESS_DENIED,
        )
    # A local credentials setup problem, not the store's: name the variable or file to fix.
    if isinstance(exc, ProfileNotFound):
        import os

        import botocore.session

        try:
            known = ", ".join(botocore.session.Session().available_profiles) or "none"
        except Exception:  # a config file that does not parse: the message still names AWS_PROFILE
            known = "unknown"
        return UserError(
            f"AWS_PROFILE={os.environ.get('AWS_PROFILE', '')!r}: the profile {exc.kwargs.get('profile')!r} is not in "
            f"~/.aws/config or ~/.aws/credentials (profiles there: {known}). Set AWS_PROFILE to one of them, or unset it "
            "and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
            exit_code=EXIT_ACCESS_DENIED,
        )
    if isinstance(exc, ConfigParseError):
        return UserError(
            f"cannot parse the AWS config file {exc.kwargs.get('path')!r} (INI: [profile-name] sections of key = value "
            "lines). Fix it, or point AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE elsewhere.",
            exit_code=EXIT_ACCESS_DENIED,
        )
    if not isinstance(exc, ClientError):
        return UserError(f"object store {where}, bucket {bucket!r}: {what} failed: {exc}", exit_code=EXIT_STORE_ERROR)

    code, message, status = error_code(exc), error_message(exc), _status(exc)
    detail = f"{code}: {message}" if message else code or f"HTTP {status}"
    if what.startswith("checking bucket") and code == str(status) and status not in (301, 403):
        # The first request is a LIST, which every S3 API answers with an XML error code (NoSuchBucket, ...);
        # a bare HTTP status means something else answered: a web server, a proxy, Triton, SeaweedFS's master port.
        return UserError(
            f"{where} answered HTTP {status} without an S3 error code while {what}: it does not look like an S3 API "
            "endpoint. Check --endpoint-url (SeaweedFS's S3 port is 8333 by default, MinIO's 9000; "
            "Swift serves S3 through its s3api middleware).",
            exit_code=EXIT_UNREACHABLE,
        )
    if code.startswith("KMS.") or code.startswith("KMS") or ("KMS" in message and code in _DENIED | {"InvalidArgument"}):
        return UserError(
            f"the store refused the KMS key while {what} ({detail}). The key must exist in this region, be enabled, "
            "be a symmetric ENCRYPT_DECRYPT key, and allow kms:GenerateDataKey and kms:Decrypt to these credentials.",
            exit_code=EXIT_KMS,
        )
    if code in _NO_BUCKET or (status == 404 and what.startswith("checking bucket")):
        return UserError(
            f"bucket {bucket!r} does not exist at {where}. Create it first (the Pulumi stack creates the cloud "
            "buckets; `hybridserve local up` creates the local one) or pass the right --bucket / --endpoint-url.",
            exit_code=EXIT_NO_BUCKET,
        )
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") or status == 301:
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        hint = f"pass --region {region}" if region else "pass the bucket's region with --region"
        return UserError(f"bucket {bucket!r} is in another region than asked ({detail}): {hint}.", exit_code=EXIT_STORE_ERROR)
    if code in _DENIED or status == 403:
        if code in _CREDENTIAL_CODES:
            why = "the store does not accept these credentials (wrong or expired access key / secret)"
        else:
            why = (
                "these credentials may not do it: they need s3:ListBucket, s3:GetObject, s3:PutObject "
                "(and s3:DeleteObject for --prune) on the prefix"
                + (", and kms:GenerateDataKey / kms:Decrypt on the key" if sse == "aws:kms" else "")
            )
        return UserError(f"access denied at {where}, bucket {bucket!r}, while {what} ({detail}): {why}.", exit_code=EXIT_ACCESS_DENIED)
    if sse == "aws:kms" and code in ("InternalError", "NotImplemented", "InvalidArgument", "InvalidRequest") and "upload" in what:
        return UserError(
            f"the store at {where} refused an SSE-KMS write while {what} ({detail}). Stores without a KMS "
            "(SeaweedFS, Swift) support SSE-S3 only: use --sse AES256.",
            exit_code=EXIT_KMS,
        )
    return UserError(f"object store {where}, bucket {bucket!r}: {what} failed ({detail}).", exit_code=EXIT_STORE_ERROR)
