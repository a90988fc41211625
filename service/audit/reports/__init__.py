"""Readers of the audit trail, inside the door to the data: the patient's `$access-log` and the IG lead's tools
(`$break-glass-queue`, `$break-glass-review`, `$access-report`, `$denials-report`, `$objections-report`).
Each module lists its `OPERATIONS`; each checks who may use it before any storage access."""
