"""Per-task configuration: one `<task>/model_description.json` per task, read by `config.tasks`."""
