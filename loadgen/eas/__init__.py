"""The EAS protocol, sans-I/O: builders, parsers, provisioning state machine, policy, statuses.

Nothing in this package imports asyncio or aiohttp.
"""
