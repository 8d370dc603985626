"""Silences and maintenance windows: `model` (matchers, recurring windows, validation), `apply` (the pipeline
step that turns a covered page into a suppression) and `admin` (create, list, expire; for the API and the CLI)."""
