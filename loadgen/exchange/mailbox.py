"""The generated Inbox moved to the mail store (store.py); these names stay importable for the
modules that still use them."""

from loadgen.exchange.store import INBOX as INBOX_ID, attachment_content

__all__ = ["INBOX_ID", "attachment_content"]
