"""The code location's instances, loaded by dg's defs-folder loader (`definitions.py`): one
`defs.yaml` per TestIO customer (`testio_pipeline.TestIOMirror`), plus the executor."""
