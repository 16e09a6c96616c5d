"""S3 bucket naming rules, without pydantic: the stack schema (schema/storage.py) and the sync both use them,
and the sync should not pay for building the schema (half of an unchanged sync's CPU time) to check a name."""

from __future__ import annotations

import ipaddress
import re

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# S3 general purpose bucket naming rules, https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
# (read 2026-12-01): 3-63 characters of a-z 0-9 . -, starting and ending with a letter or digit, no '..',
# not formatted like an IP address, and these reserved prefixes and suffixes (sthree- covers sthree-configurator).
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# <prefix>-<12-digit account>-<region>-an is the account regional namespace's form, which only that
# account can create, and only by asking for that namespace (gpbucketnamespaces.html, same date); the kit
# creates buckets in the global namespace, so such a name would fail.
_ACCOUNT_REGIONAL = re.compile(r"-\d{12}-[a-z]{2}(-[a-z]+)+-\d+-an$")


def check_bucket_name(value: str) -> str:
    """S3 bucket naming rules (Swift containers follow them too, so both work through the S3 API)."""
    rule = "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    if not isinstance(value, str) or not _BUCKET.match(value):
        raise ValueError(f"{value!r} is not a valid bucket name; use {rule} (S3 bucket naming rules)")
    # '.-' and '-.' make a DNS label start or end with '-', which virtual-hosted-style addressing cannot use.
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError(f"{value!r} is not a valid bucket name; no '..', '.-' or '-.'")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise ValueError(f"{value!r} is not a valid bucket name; it must not look like an IP address")
    if value.startswith(S3_RESERVED_PREFIXES) or value.endswith(S3_RESERVED_SUFFIXES):
        reserved = ", ".join([f"{p}..." for p in S3_RESERVED_PREFIXES] + [f"...{x}" for x in S3_RESERVED_SUFFIXES])
        raise ValueError(f"{value!r} uses a prefix or suffix S3 reserves ({reserved})")
    if _ACCOUNT_REGIONAL.search(value):
        raise ValueError(f"{value!r} has the form of S3's account regional namespace (...-<account>-<region>-an); the kit creates global buckets, pick another name")
    return value
