"""The PostgreSQL ledger: migrations, queries, and the async Ledger repository.

The only package that talks to PostgreSQL. Import what you need from its modules:
`prewarm.ledger.repository.Ledger`, `prewarm.ledger.migrate.migrate`,
`prewarm.ledger.models` (plain result values).
"""
