"""Policy as code: the rules every preview and update must pass (`rules.py`), run by the CrossGuard pack
in `policy/` and offline by `hybridserve plan` and `hybridserve policy check`. Standard library only."""
