"""The sans-I/O core: messages, URIs, headers, SDP, digest, transactions, dialogs.

Nothing in this package imports trio, socket, time or random: every input that depends on
the clock takes ``now`` and randomness comes from an injected generator.
"""
