"""The reference choreography: an online shop of five services.

Run it with ``make demo`` (or ``choreograph demo``); see README.md here.
"""
