"""Pure decisions: snapshots and `now` in, plans out. No I/O is imported here."""
