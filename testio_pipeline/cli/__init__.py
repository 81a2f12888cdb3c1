"""Command-line tools: `python -m testio_pipeline.cli run|status`, `python -m testio_pipeline.cli.query`,
`python -m testio_pipeline.cli.docs`."""
