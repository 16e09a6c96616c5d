"""What `pulumi up` runs (Pulumi.yaml `main: infra/`); `hybridserve plan` runs this same file under mocks."""

from infra.program import run

run()
