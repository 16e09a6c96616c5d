"""CI stages per team stack (`hybridserve ci ...`): decisions in `decide` (pure), tools in `run`, commands in `cli`."""
