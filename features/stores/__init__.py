"""Online store backends beyond the embedded SQLite one, and the factory that picks one from the settings."""
