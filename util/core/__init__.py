"""What every other part uses: devices and CPU features (device), crash-safe files (files), the command-line kit (cli)."""
