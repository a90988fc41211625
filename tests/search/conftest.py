"""Search tests exercise search semantics as admin.ada (an administrator sees every resource; the root
conftest's `client` sends her token): identity and consent are tested in their own suites, through the same
repository and policy."""
