"""The ``immunocal`` command line. Each command lives in its own module with a ``register`` function."""
