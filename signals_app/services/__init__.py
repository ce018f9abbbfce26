"""Workflows of signal imports (views, tasks and commands call these; HTTP stays in views).

- `imports`: upload, validation, preview queries, fixes, downloads
- `sending`: test and live sends through the batch ledger, cancel, promote, resend
"""
