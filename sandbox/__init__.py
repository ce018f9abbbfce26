"""Local stand-in for Acoustic Connect and Attentive (GraphQL over HTTP, SFTP).

A separate process: the app reaches it only over HTTP and SFTP, as it would the vendors.
"""
