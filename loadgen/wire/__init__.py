"""The wire: the devices' HTTP/1.1 transports (lean and aiohttp), TLS contexts, the request-rate cap and
the redirect rule.  Imports nothing from the rest of loadgen."""
