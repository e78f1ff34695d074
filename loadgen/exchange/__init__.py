"""The embedded EAS target that plays Exchange (aiohttp.web)."""
