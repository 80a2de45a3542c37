"""Reports: verdicts and outcomes counted once into hourly rows, kept in a store, read by CLI and HTTP."""
