"""The edge runtime: what runs on an operator-owned host next to the data (issue 15, part 2).

tritonserver (the nvidia-pytriton wheel, as the local plane runs it) serves from a local encrypted
object-store cache (SeaweedFS with an SSE-S3 key-encryption key, the local plane's code), which a timer
fills from the hub bucket (the published repository: only changed objects, resumable, bandwidth-limited).

    python -m hybridserve.edge install --root / --bundle B --config -    # files, user, units, firewall
    python -m hybridserve.edge apply ...                                  # install + switch + start + health
    python -m hybridserve.edge start|status|stop|uninstall --root /
    python -m hybridserve.edge upgrade --root / --bundle B                # side by side, rollback on failure
    python -m hybridserve.edge rollback --root /                          # back to the previous version + its files
    python -m hybridserve.edge restart|prune --root /                     # Triton only; drop other publications

Never imports pulumi: the Pulumi component (infra/components/edge.py) renders its remote scripts with
`hybridserve.edge.render`, the very functions the runtime tests run for real under a temporary root.
"""
