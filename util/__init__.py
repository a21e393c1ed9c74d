"""Command-line tools and helpers around the model zoo."""
