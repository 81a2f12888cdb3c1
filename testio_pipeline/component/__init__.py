"""The project's Dagster Component, `testio_pipeline.TestIOMirror` (``mirror.py``), and the
definitions one instance builds from the Dagster-free core: thin glue, named per instance."""
