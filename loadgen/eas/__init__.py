"""The EAS protocol, sans-I/O: builders, parsers, provisioning state machine, policy, statuses,
the MS-ASHTTP request head (``http.py``) and the Autodiscover protocol (``autodiscover.py``).

Nothing in this package imports asyncio, aiohttp or a socket (tests/test_layering.py).
"""
