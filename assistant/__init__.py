"""Entry points: the ``assistant`` command, the embedded runner, the gateway and worker modules."""
