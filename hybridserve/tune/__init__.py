"""`hybridserve models tune`: Model Analyzer's search of a model's serving configuration, for this kit.

search.py (candidates, space, coordinate descent; pure), measure.py (one candidate on a running Triton),
results.py (the resumable JSON-lines file), pbtxt.py (writing the best into config.pbtxt), command.py (the CLI).
"""
