"""The code location's executor, shared by every instance."""

import dagster as dg

# One process per run: a trivial run takes half the time it takes with multiprocess.
defs = dg.Definitions(executor=dg.in_process_executor)
