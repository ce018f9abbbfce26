"""Workflows of signal imports (views, tasks and commands call these; HTTP stays in views).

In the order an import goes through them:
- `upload`: import_create (the file kept under a generated name), import_file_path
- `validation`: import_validate (the task's body), its finding store and follow-up pass
- `preview`: the problem table and the pages of rejected signals the import page shows
- `fixes`: unambiguous fixes found per record, offered, and applied as a corrected copy
- `downloads`: the error report CSV and the valid signals NDJSON
- `sending`: test and live sends through the batch ledger, cancel, promote, resend
- `records`: the file's records as Python values (parse, dump), shared by the others

No cycles: `upload` and `records` import no other service; `preview` imports `records`;
`fixes` imports `upload` and `records`; `validation` imports those and `fixes`;
`downloads` imports `upload` and `records`; `sending` imports `upload` and `downloads`.
Only `tasks` is imported back, at run time, to queue a task.
"""
