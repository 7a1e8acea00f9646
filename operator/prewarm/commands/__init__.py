"""The CLI's user-facing commands (claim, status, history, reset): thin and typed."""
