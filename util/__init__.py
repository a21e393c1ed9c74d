"""The commands a user types live here as util/<verb>.py (nothing imports them); the libraries they share live in
subpackages, one per concern: core/ (devices, crash-safe files, the CLI kit), train/, measure/ and deploy/."""
