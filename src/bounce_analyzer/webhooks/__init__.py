"""Receiving SendGrid's and Mailgun's event webhooks (`bounce-analyzer serve`): the checks that
a request really comes from the ESP and is not a replay (`verify.py`), the HTTP server and the
append-only spool it writes events to before it answers; `ingest` then reads the spool like any
other input. The contract the ESPs and operators rely on is in docs/WEBHOOKS.md.
"""
