"""The Pulumi program of hybridserve (Pulumi.yaml: `main: infra/`).

infra/__main__.py   entry point Pulumi runs; calls infra.program.run()
infra/program.py    reads the config, builds the StackContext, runs the component builders, exports
infra/context.py    StackContext: config, naming, tags, providers, shared parts, stack outputs
infra/config.py     reads `hybridserve:*` config through pulumi.Config into a StackConfig
infra/components/   the component plug-ins (network, VPN, clusters, storage, serving)
infra/mocks.py      table-driven mock outputs per resource type, for the offline plan
infra/plan.py       the offline plan: the real program under the SDK's mock engine
infra/manifests.py  the plan's Kubernetes objects as manifests per cluster, Helm releases apart; schema validation
"""
