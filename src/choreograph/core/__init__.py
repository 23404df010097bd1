"""Core contracts: events, envelopes, codec, ids, errors and the broker protocol.

Depends on nothing else in choreograph.
"""
