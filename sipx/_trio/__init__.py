"""The thin trio layer: transports, name resolution and the tasks a client runs."""
