"""Hot update of a served model: `models promote` / `models rollback` (see flow.py for the steps).

Modules: endpoints (where), store (the published repository), serving (Triton's repository API), gate (the
smoke gate on the candidate), compare (old vs new), history (the audit record), flow (the steps), report, cli.
Data plane: never imports pulumi.
"""
